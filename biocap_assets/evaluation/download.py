"""Fetch benchmark images by URL and verify their md5, as ``cautious-robot`` does.

Files already present with the right md5 are skipped, so a stopped download resumes
where it stopped. A file is written under a temporary name (``.<name>.part``, the same
name on every attempt, so a killed download's leftover is overwritten and removed by the
next) and renamed only once it is whole, an image, and its md5 matches; anything else is
reported and never placed where the evaluation would read it.

The URLs come from annotation files someone else wrote, so what is fetched is bounded
(README, "Trust boundaries"):

- only ``http`` and ``https``; a local path or ``file:``/``data:`` URL is refused (images
  already on disk are used in place: point ``BIOCAP_EVAL_IMAGES`` at them);
- a host that resolves to a private, loopback, link-local or otherwise non-public address
  is refused unless it is in ``allowed_hosts``; the address actually connected to is
  checked, so a redirect or a DNS answer cannot lead inside either;
- a destination comes from the row's id, which must stay under the image root;
- at most ``max_bytes`` per file and ``deadline`` seconds per file, however slowly the
  server drips; a body shorter than its ``Content-Length``, or that is not an image (an
  HTML error page served with 200), is refused.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from biocap_assets.common.files import UnsafePath, safe_join
from biocap_assets.common.images import open_image

USER_AGENT = "biocap-eval-images/0.1"
SCHEMES = ("http", "https")
MAX_BYTES = 64 << 20  # the benchmarks' images are JPEGs of a few MB
DEADLINE = 300.0  # seconds for one file, all reads together
_ACCEPTED_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


class Refused(Exception):
    """The item is not fetched, or its answer is not used; retrying would not help.
    (Not an OSError, so urllib passes it through instead of wrapping it.)"""


@dataclass(frozen=True)
class DownloadItem:
    url: str
    root: Path
    name: str  # the file under ``root``, from the annotation row's id
    md5: str = ""

    @property
    def dest(self) -> Path:
        return safe_join(self.root, self.name)


@dataclass
class DownloadReport:
    downloaded: int = 0
    already_present: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "downloaded": self.downloaded,
            "already_present": self.already_present,
            "missing": len(self.missing),
            "mismatched": len(self.mismatched),
            "refused": len(self.refused),
            "missing_examples": self.missing[:10],
            "mismatched_examples": self.mismatched[:10],
            "refused_examples": self.refused[:10],
        }


@dataclass(frozen=True)
class Limits:
    timeout: float = 30.0  # per read
    deadline: float = DEADLINE
    max_bytes: int = MAX_BYTES
    retries: int = 2
    allowed_hosts: frozenset[str] = frozenset()  # "host" or "host:port"

    @classmethod
    def with_hosts(cls, hosts: Iterable[str], **kwargs) -> Limits:
        return cls(allowed_hosts=frozenset(h.strip().lower() for h in hosts if h), **kwargs)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_url(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise Refused(
            f"{scheme or 'a local path'} is not fetched (only http and https); for images "
            "already on disk, point BIOCAP_EVAL_IMAGES at their folder"
        )
    if not urllib.parse.urlsplit(url).hostname:
        raise Refused("the URL names no host")


def check_address(host: str, port: int, address: str, allowed: frozenset[str]) -> None:
    """Refuse a connection to a non-public address unless its host is allowed."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return
    host = host.lower().strip("[]")
    if host in allowed or f"{host}:{port}" in allowed:
        return
    raise Refused(
        f"{host} is at {ip}, a private or local address; add {host!r} to allowed_hosts to "
        "fetch from it"
    )


def _guarded(connection: type[http.client.HTTPConnection], allowed: frozenset[str]):
    class Guarded(connection):  # type: ignore[valid-type, misc]
        def connect(self) -> None:
            super().connect()  # TCP (and TLS): no request has been sent yet
            try:
                check_address(self.host, self.port, self.sock.getpeername()[0], allowed)
            except Refused:
                self.close()
                raise

    return Guarded


def opener(allowed: frozenset[str]) -> urllib.request.OpenerDirector:
    """http and https only (redirects included: urllib would follow one to ftp), every
    connection checked by :func:`check_address`, no proxy from the environment."""
    http_connection = _guarded(http.client.HTTPConnection, allowed)
    https_connection = _guarded(http.client.HTTPSConnection, allowed)

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(http_connection, req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(https_connection, req, context=self._context)

    director = urllib.request.OpenerDirector()
    for handler in (
        HTTP(),
        HTTPS(),
        urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.UnknownHandler(),
    ):
        director.add_handler(handler)
    return director


def _copy(response, tmp: Path, limits: Limits, started: float) -> None:
    length = response.headers.get("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    if expected is not None and expected > limits.max_bytes:
        raise Refused(f"Content-Length {expected} is above the cap of {limits.max_bytes} bytes")
    kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if kind and not kind.startswith(_ACCEPTED_TYPES):
        raise Refused(f"the answer is {kind}, not an image")
    got = 0
    with tmp.open("wb") as out:
        while chunk := response.read1(1 << 16):  # what has arrived, not a full buffer
            got += len(chunk)
            if got > limits.max_bytes:
                raise Refused(f"the body is above the cap of {limits.max_bytes} bytes")
            if time.monotonic() - started > limits.deadline:
                raise Refused(f"not done after {limits.deadline:.0f} s (a drip-fed body?)")
            out.write(chunk)
    if expected is not None and got < expected:
        raise urllib.error.URLError(f"short body: {got} of {expected} bytes")


def _fetch(url: str, tmp: Path, limits: Limits, director) -> str | None:
    """None on success, else the reason. Only what may pass retries is retried: a server
    error, 429, a dropped connection or short body; a 404 does not come back by waiting."""
    started = time.monotonic()

    def attempt() -> None:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with director.open(request, timeout=limits.timeout) as response:
            _copy(response, tmp, limits, started)

    def passes_with_time(exc: BaseException) -> bool:
        if time.monotonic() - started > limits.deadline:
            return False
        if isinstance(exc, urllib.error.HTTPError):
            return exc.code >= 500 or exc.code == 429
        return isinstance(
            exc, urllib.error.URLError | TimeoutError | OSError | http.client.HTTPException
        )

    retrying = Retrying(
        stop=stop_after_attempt(limits.retries + 1),
        wait=wait_exponential(multiplier=0.5, max=8.0),
        retry=retry_if_exception(passes_with_time),
        reraise=True,
    )
    try:
        retrying(attempt)
        return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"


def _is_image(path: Path) -> str | None:
    try:
        with open_image(path):
            pass
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"not a readable image ({exc})"
    return None


def _one(item: DownloadItem, limits: Limits, director) -> tuple[str, str]:
    try:
        dest = item.dest
        check_url(item.url)
    except (UnsafePath, Refused) as exc:
        return "refused", f"{item.url} -> {item.name!r}: {exc}"
    md5 = item.md5.strip().lower()
    if dest.exists() and (not md5 or md5_of(dest) == md5):
        return "present", ""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        try:
            reason = _fetch(item.url, tmp, limits, director)
        except Refused as exc:
            return "refused", f"{item.url}: {exc}"
        if reason is not None:
            return "missing", f"{item.url}: {reason}"
        if md5 and md5_of(tmp) != md5:
            return "mismatched", f"{item.url}: md5 {md5_of(tmp)} != {md5}"
        if problem := _is_image(tmp):
            return "refused", f"{item.url}: {problem}"
        os.replace(tmp, dest)
        return "downloaded", ""
    finally:
        tmp.unlink(missing_ok=True)


def resolve(url: str, base_url: str) -> str:
    return url if urllib.parse.urlsplit(url).scheme else urllib.parse.urljoin(base_url, url)


def download_all(
    items: Sequence[DownloadItem], workers: int = 8, limits: Limits | None = None
) -> DownloadReport:
    limits = limits or Limits()
    director = opener(limits.allowed_hosts)
    report = DownloadReport()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for status, detail in pool.map(lambda i: _one(i, limits, director), items):
            if status == "present":
                report.already_present += 1
            elif status == "downloaded":
                report.downloaded += 1
            elif status == "missing":
                report.missing.append(detail)
            elif status == "refused":
                report.refused.append(detail)
            else:
                report.mismatched.append(detail)
    return report
