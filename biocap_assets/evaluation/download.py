"""Fetch benchmark images by URL and verify their md5, as ``cautious-robot`` does.

Files already present with the right md5 are skipped, so a stopped download
resumes where it stopped. A file is written under a temporary name and renamed
only once its md5 matches; a mismatch is reported and never placed where the
evaluation would read it. Relative URLs are resolved against ``base_url``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

USER_AGENT = "biocap-eval-images/0.1"


@dataclass(frozen=True)
class DownloadItem:
    url: str
    dest: Path
    md5: str = ""


@dataclass
class DownloadReport:
    downloaded: int = 0
    already_present: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "downloaded": self.downloaded,
            "already_present": self.already_present,
            "missing": len(self.missing),
            "mismatched": len(self.mismatched),
            "missing_examples": self.missing[:10],
            "mismatched_examples": self.mismatched[:10],
        }


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, tmp: Path, timeout: float, retries: int) -> str | None:
    """None on success, else the reason. Only what may pass retries: a server error, 429,
    a dropped connection; a missing local file or a 404 does not come back by waiting."""
    if urllib.parse.urlparse(url).scheme in ("", "file"):
        try:
            shutil.copyfile(urllib.parse.urlparse(url).path, tmp)
            return None
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"

    def attempt() -> None:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response, tmp.open("wb") as out:
            shutil.copyfileobj(response, out)

    def passes_with_time(exc: BaseException) -> bool:
        if isinstance(exc, urllib.error.HTTPError):
            return exc.code >= 500 or exc.code == 429
        return isinstance(exc, urllib.error.URLError | TimeoutError | OSError)

    retrying = Retrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=0.5, max=8.0),
        retry=retry_if_exception(passes_with_time),
        reraise=True,
    )
    try:
        retrying(attempt)
        return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _one(item: DownloadItem, timeout: float, retries: int) -> tuple[str, str]:
    if item.dest.exists() and (not item.md5 or md5_of(item.dest) == item.md5):
        return "present", ""
    item.dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = item.dest.with_name(f".{item.dest.name}.part")
    try:
        reason = _fetch(item.url, tmp, timeout, retries)
        if reason is not None:
            return "missing", f"{item.url}: {reason}"
        if item.md5 and md5_of(tmp) != item.md5:
            return "mismatched", f"{item.url}: md5 {md5_of(tmp)} != {item.md5}"
        os.replace(tmp, item.dest)
        return "downloaded", ""
    finally:
        tmp.unlink(missing_ok=True)


def resolve(url: str, base_url: str) -> str:
    return url if urllib.parse.urlparse(url).scheme else urllib.parse.urljoin(base_url, url)


def download_all(
    items: Sequence[DownloadItem], workers: int = 8, timeout: float = 30.0, retries: int = 2
) -> DownloadReport:
    report = DownloadReport()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for status, detail in pool.map(lambda i: _one(i, timeout, retries), items):
            if status == "present":
                report.already_present += 1
            elif status == "downloaded":
                report.downloaded += 1
            elif status == "missing":
                report.missing.append(detail)
            else:
                report.mismatched.append(detail)
    return report
