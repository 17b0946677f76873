"""Any OpenAI-compatible chat-completions endpoint (``vllm serve``, a hosted API...).

Bounded concurrency (a thread pool), a timeout per call, and retries with
exponential backoff on connection errors, timeouts, 429 and 5xx (honouring
``Retry-After``, at most ``RETRY_AFTER_MAX`` seconds), through tenacity. A request that
still fails, or whose answer has no text, becomes a :class:`Generation` with an error;
the batch goes on.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from biocap_assets.inference.base import (
    INTERNVL_CHAT_TEMPLATE,
    Generation,
    GenerationRequest,
    SamplingConfig,
    chat_messages,
)

CHAT_TEMPLATES = {"internvl": INTERNVL_CHAT_TEMPLATE}

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
RETRY_AFTER_MAX = 60.0  # seconds


def request_payload(model: str, sampling: SamplingConfig, request: GenerationRequest) -> dict:
    """The body of ``POST /chat/completions`` for one request.

    A raw request (BioCAP's InternVL prompt) carries ``INTERNVL_CHAT_TEMPLATE``, which
    vLLM's server renders to exactly the raw prompt ``caption_gen`` builds. vLLM accepts a
    request's ``chat_template`` only when started with ``--trust-request-chat-template``.
    """
    payload = {
        "model": model,
        "messages": chat_messages(request),
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.stop:
        payload["stop"] = list(sampling.stop)
    if request.raw_template:
        payload["chat_template"] = CHAT_TEMPLATES[request.raw_template]
        payload["add_generation_prompt"] = True
    if request.seed is not None:
        payload["seed"] = request.seed
    return payload


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str  # e.g. http://vllm:8000/v1
    model: str
    api_key: str = ""
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 3
    backoff_base: float = 1.0


class _Retryable(Exception):
    def __init__(self, message: str, wait: float | None = None):
        super().__init__(message)
        self.wait = wait


class OpenAIBackend:
    name = "openai"

    def __init__(self, config: OpenAIConfig, sampling: SamplingConfig):
        self.config = config
        self.model = config.model
        self._sampling = sampling
        self._url = config.base_url.rstrip("/") + "/chat/completions"

    def _post(self, body: bytes) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code in _RETRY_STATUS:
                wait = exc.headers.get("Retry-After")
                seconds = float(wait) if wait and wait.replace(".", "", 1).isdigit() else None
                # a server may ask for hours: wait at most RETRY_AFTER_MAX, then retry
                raise _Retryable(
                    f"HTTP {exc.code}",
                    None if seconds is None else min(seconds, RETRY_AFTER_MAX),
                ) from exc
            detail = exc.read()[:300].decode("utf-8", "replace")
            if "trust-request-chat-template" in detail:
                detail += (
                    " (BioCAP's caption prompt sends its own chat template: start the server "
                    "with `vllm serve ... --trust-request-chat-template`)"
                )
            raise ValueError(f"HTTP {exc.code}: {detail}") from exc
        except TimeoutError as exc:
            raise _Retryable(f"timeout after {self.config.timeout}s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                raise _Retryable(f"timeout after {self.config.timeout}s") from exc
            raise _Retryable(f"connection error: {exc.reason}") from exc
        except ValueError as exc:
            raise ValueError(f"malformed answer: {exc}") from exc

    def _wait(self, state: RetryCallState) -> float:
        """The server's Retry-After (capped) when it sent one, else exponential backoff."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.wait is not None:
            return exc.wait
        return self.config.backoff_base * 2 ** (state.attempt_number - 1)

    def _one(self, request: GenerationRequest) -> Generation:
        payload = request_payload(self.model, self._sampling, request)
        body = json.dumps(payload).encode()
        attempts = self.config.retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            answer = retrying(self._post, body)
            text = answer["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise ValueError("malformed answer: message content is not text")
            return Generation(request.id, text.strip())
        except _Retryable as exc:
            return Generation(request.id, None, f"{exc} after {attempts} attempts")
        except (KeyError, IndexError, TypeError) as exc:
            return Generation(request.id, None, f"malformed answer: missing {exc}")
        except ValueError as exc:
            return Generation(request.id, None, str(exc))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            return list(pool.map(self._one, requests))
