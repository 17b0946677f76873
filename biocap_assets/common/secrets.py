"""One redaction for every text that leaves a process: output, logs, metadata, errors.

Secrets reach us in three forms, and ``redact`` removes each:

- ``key=value`` settings in a connection string (``password=x``, ``password = 'x y'``,
  ``"password": "x"``, and ``secret``, ``token``, ``api_key``, ``access_key`` alike);
- credentials in a URL (``postgresql://user:pw@host``, ``https://user:pw@host``);
- the values themselves, wherever they appear and however they are quoted: every
  environment variable whose name says it holds a secret (``*PASSWORD*``, ``*SECRET*``,
  ``*TOKEN*``, ``*_KEY``, ``*_KEY_ID``), and the passwords inside the platform's own
  variables (a DuckLake catalog, URLs with credentials), are replaced by value.

Workers redact their log and error streams (``workers.runtime``); the step redacts what it
raises and the metadata it writes.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
_KEYS = (
    r"password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key(?:[_-]?id)?"
    r"|secret[_-]?access[_-]?key"
)
_SETTING = re.compile(rf"(?i)((?:{_KEYS})[\"']?\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s,;&'\"}}]+)")
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):([^@\s/]*)@")
_SECRET_NAME = re.compile(r"(?i)(PASSWORD|PASSWD|SECRET|TOKEN|_KEY$|_KEY_ID$|API_KEY)")
_MIN_VALUE = 6  # shorter values would mask ordinary words


def is_secret_name(name: str) -> bool:
    """Whether a variable's name says it holds a secret (a password, token or key)."""
    return bool(_SECRET_NAME.search(name))


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """The secret values an environment holds, longest first."""
    env = os.environ if env is None else env
    values = set()
    for name, value in env.items():
        value = (value or "").strip()
        if not value:
            continue
        if is_secret_name(name) and len(value) >= _MIN_VALUE:
            values.add(value)
        if name.startswith("BIOCAP_"):
            for match in _SETTING.finditer(value):
                values.add(match.group(2).strip("'\""))
            for match in _URL_CREDENTIALS.finditer(value):
                values.add(match.group(2))
    return sorted((v for v in values if len(v) >= _MIN_VALUE), key=len, reverse=True)


def redact(text: str, values: Iterable[str] | None = None) -> str:
    """``text`` with every secret replaced by ``***``; ``values``: the secret values to
    remove wherever they appear (default: :func:`secret_values` of this environment)."""
    if not text:
        return text
    text = _SETTING.sub(lambda m: m.group(1) + MASK, text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    for value in secret_values() if values is None else values:
        if value and value in text:
            text = text.replace(value, MASK)
    return text


class RedactingStream(io.TextIOBase):
    """A text stream that redacts each line before passing it on (a secret split across
    two writes of one line is still found; a line is held until its newline)."""

    def __init__(self, target, values: Iterable[str] | None = None):
        self._target = target
        self._values = list(secret_values() if values is None else values)
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            complete, _, self._pending = self._pending.rpartition("\n")
            self._target.write(redact(complete + "\n", self._values))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._target.write(redact(self._pending, self._values))
            self._pending = ""
        self._target.flush()

    def fileno(self) -> int:
        return self._target.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self):
        return getattr(self._target, "encoding", "utf-8")
