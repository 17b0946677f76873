"""Retries that wait, and requests to the API's host only.

Retries that wait: honour ``Retry-After`` (429, 503, MediaWiki ``maxlag``), back off on
5xx and timeouts.

Scrapy's own RetryMiddleware re-queues a failed request at once. A careful client
waits: the server's ``Retry-After`` when it gives one (capped by
``BIOCAP_RETRY_AFTER_MAX``), else exponential backoff from ``BIOCAP_BACKOFF_BASE``.
MediaWiki reports replica lag as HTTP 200 with an ``error.code == "maxlag"`` body
and a ``Retry-After`` header; that is retried the same way.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from scrapy.utils.httpobj import urlparse_cached


def retry_after_seconds(value: bytes | str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def is_maxlag(response: Response) -> bool:
    if response.status != 200 or b'"maxlag"' not in response.body[:2000]:
        return False
    try:
        error = json.loads(response.body).get("error") or {}
    except ValueError:
        return False
    return isinstance(error, dict) and error.get("code") == "maxlag"


class PoliteRetryMiddleware(RetryMiddleware):
    """Replaces Scrapy's RetryMiddleware; same settings plus the two above."""

    def __init__(self, settings):
        super().__init__(settings)
        self.backoff_base = settings.getfloat("BIOCAP_BACKOFF_BASE", 1.0)
        self.retry_after_max = settings.getfloat("BIOCAP_RETRY_AFTER_MAX", 120.0)

    def _delay(self, request: Request, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        attempt = request.meta.get("retry_times", 0)
        return min(self.backoff_base * (2**attempt), self.retry_after_max)

    async def _wait(self, request: Request, reason: str, delay: float) -> None:
        stats = self.crawler.stats
        if stats is not None:
            stats.inc_value("biocap/retry_wait_seconds", delay)
        self.crawler.spider.logger.info(
            f"{reason} for {request.url[:120]}: retrying in {delay:.2f}s"
        )
        await asyncio.sleep(delay)

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get("dont_retry", False):
            return response
        maxlag = is_maxlag(response)
        if response.status not in self.retry_http_codes and not maxlag:
            return response
        reason = "maxlag" if maxlag else f"HTTP {response.status}"
        retry = self._retry(request, reason)
        if retry is None:
            return response
        header = response.headers.get(b"Retry-After")
        await self._wait(request, reason, self._delay(request, retry_after_seconds(header)))
        return retry

    async def process_exception(
        self, request: Request, exception: Exception
    ) -> Request | Response | None:
        if request.meta.get("dont_retry", False) or not isinstance(
            exception, self.exceptions_to_retry
        ):
            return None
        retry = self._retry(request, exception)
        if retry is None:
            return None
        await self._wait(request, type(exception).__name__, self._delay(request, None))
        return retry


class ApiHostOnlyMiddleware:
    """Refuses a request to any host but the API's (``spider.api_host``), a redirect's
    included: the crawl talks to BIOCAP_WIKI_API_URL only, and an answer redirecting
    elsewhere becomes an error row for its taxa. Not Scrapy's OffsiteMiddleware: it lets
    ``dont_filter`` requests through, and every request of ours is one (a retried batch
    is not a duplicate)."""

    def __init__(self, crawler):
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def process_request(self, request: Request) -> None:
        api_host = getattr(self.crawler.spider, "api_host", "")
        host = urlparse_cached(request).hostname or ""
        if api_host and host != api_host:
            raise IgnoreRequest(f"not followed: {host} is not the API's host {api_host}")
