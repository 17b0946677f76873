"""Scrapy settings for the Wikipedia crawl, polite by default.

Defaults suit the live English Wikipedia: a descriptive User-Agent with a
contact, at most 3 requests in flight, AutoThrottle, gzip, and retries that
wait (see middlewares.py). Tests and the demo override timeouts and backoff.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

from biocap_assets import __version__

PROJECT_URL = "https://github.com/biocap-platform/biocap"


@dataclass(frozen=True)
class CrawlOptions:
    contact: str = ""
    concurrency: int = 3
    timeout: float = 30.0
    retry_times: int = 4
    backoff_base: float = 1.0
    retry_after_max: float = 120.0
    autothrottle: bool = True
    maxlag: int | None = 5
    flush_every: int = 200
    progress_every: int = 100
    keep_lead: bool = True
    keywords: tuple[str, ...] = ()
    section_policy: str = "reference"  # scraping.sections.POLICIES
    close_after_pages: int = 0  # stop after this many responses (0: never); for tests
    # The largest answer accepted (after decompression). Species pages' action=parse HTML
    # is tens to a few hundred kB; the longest English Wikipedia articles are about 2 MB.
    # lxml needs about 60x a page's size, so 8 MiB bounds one parse near 500 MB; Scrapy's
    # default (1 GiB) let one hostile answer take a worker to 13 GB.
    max_response_bytes: int = 8 << 20

    def as_extras(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_extras(cls, extras: dict) -> CrawlOptions:
        known = {k: v for k, v in extras.items() if k in cls.__dataclass_fields__}
        if "keywords" in known:
            known["keywords"] = tuple(known["keywords"] or ())
        return cls(**known)


def user_agent(contact: str) -> str:
    """``biocap/<version> (<project url>; <contact>)``, as Wikimedia's policy asks."""
    who = f"; {contact}" if contact else ""
    return f"biocap/{__version__} (+{PROJECT_URL}{who})"


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def require_contact(api_url: str, contact: str) -> None:
    """Wikimedia asks every client for a User-Agent with a way to reach its operator."""
    host = urlparse(api_url).hostname or ""
    if host not in LOOPBACK and not contact.strip():
        raise ValueError(
            f"crawling {api_url} needs a contact for the User-Agent (an email or URL): set "
            "BIOCAP_WIKI_CONTACT (Wikimedia's User-Agent policy)"
        )


def split_credentials(api_url: str) -> tuple[str, dict]:
    """The API URL without credentials, and the settings that send them: Scrapy's
    ``HttpAuthMiddleware`` with basic auth, for that host only. So no URL requested,
    logged or stored carries them (and Twisted refuses a ``user:password@`` host)."""
    parts = urlsplit(api_url)
    if parts.username is None:
        return api_url, {}
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host)), {
        "HTTPAUTH_USER": unquote(parts.username),
        "HTTPAUTH_PASS": unquote(parts.password or ""),
        # Scrapy matches this against the request's host:port as written in the URL
        "HTTPAUTH_DOMAIN": host.lower(),
    }


# Scrapy logs its enabled components and overridden settings at INFO, with no setting to
# turn that off; these loggers say nothing else at INFO.
STARTUP_LOGGERS = ("scrapy.middleware", "scrapy.crawler", "scrapy.addons")


def quiet_startup_logs() -> None:
    """Raise Scrapy's start-up loggers to WARNING (what they warn about still shows)."""
    for name in STARTUP_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def crawler_settings(options: CrawlOptions) -> dict:
    return {
        "USER_AGENT": user_agent(options.contact),
        "ROBOTSTXT_OBEY": False,  # API endpoints; Wikimedia's API policy governs them
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,  # Scrapy 2.19 opens a control port by default
        "LOG_LEVEL": "INFO",
        # INFO without the start-up dumps (versions, settings, components) and the closing
        # stats dump: the worker reports its own counts to the run
        "LOG_VERSIONS": [],
        "STATS_DUMP": False,
        "CONCURRENT_REQUESTS": options.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": options.concurrency,
        "DOWNLOAD_TIMEOUT": options.timeout,
        "DOWNLOAD_MAXSIZE": options.max_response_bytes,
        "DOWNLOAD_WARNSIZE": min(2 << 20, options.max_response_bytes),
        "COMPRESSION_ENABLED": True,
        "AUTOTHROTTLE_ENABLED": options.autothrottle,
        "AUTOTHROTTLE_START_DELAY": 0.25,
        "AUTOTHROTTLE_MAX_DELAY": 60.0,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(options.concurrency),
        "RETRY_ENABLED": True,
        "RETRY_TIMES": options.retry_times,
        "RETRY_HTTP_CODES": [500, 502, 503, 504, 522, 524, 408, 429],
        "BIOCAP_BACKOFF_BASE": options.backoff_base,
        "BIOCAP_RETRY_AFTER_MAX": options.retry_after_max,
        "DOWNLOADER_MIDDLEWARES": {
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            "biocap_assets.scraping.middlewares.PoliteRetryMiddleware": 550,
            "biocap_assets.scraping.middlewares.ApiHostOnlyMiddleware": 60,
        },
        "HTTPERROR_ALLOW_ALL": False,
        "CLOSESPIDER_PAGECOUNT": options.close_after_pages,
        "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7",
    }
