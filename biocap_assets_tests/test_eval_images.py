"""Benchmark image download: md5 verified, resumable, failures counted, and hostile
annotation rows refused (servers on 127.0.0.1)."""

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler

import pytest
from PIL import Image

from biocap_assets.common.loopback import LoopbackServer
from biocap_assets.evaluation.download import DownloadItem, Limits, download_all


def jpeg(color=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(out, "JPEG")
    return out.getvalue()


class ImageHost(LoopbackServer):
    """Files by path, plus routes that misbehave; every request is logged. HTTP/1.0: some
    routes end their body by closing the connection."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, body=b"", kind="image/jpeg", length=None):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                if length is not False:
                    self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                host.requests.append(self.path)
                path = self.path
                if path.startswith("/busy-") and host.requests.count(path) < 3:
                    return self.send(503, b"busy", "text/plain")
                if path == "/html.jpg":
                    return self.send(200, b"<html>Not found</html>", "text/html")
                if path == "/not-an-image.jpg":
                    return self.send(200, b"plain bytes", "application/octet-stream")
                if path == "/big.jpg":
                    return self.send(200, b"", length=10**9)
                if path == "/endless.jpg":  # no Content-Length, more than the cap
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.end_headers()
                    for _ in range(64):
                        self.wfile.write(b"\xff" * 4096)
                    return None
                if path == "/short.jpg":
                    self.send(200, jpeg()[:40], length=5000)
                    self.close_connection = True
                    return None
                if path == "/drip.jpg":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    try:
                        for _ in range(1000):
                            self.wfile.write(b"\xff")
                            self.wfile.flush()
                            time.sleep(0.05)
                    except OSError:
                        pass
                    return None
                if path == "/stalls-once.jpg":  # the first answer stops halfway for a while
                    body = host.files["stalls-once.jpg"]
                    if host.requests.count(path) > 1:
                        return self.send(200, body)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    try:
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        time.sleep(20)
                    except OSError:
                        pass
                    return None
                if path.startswith("/redirect/"):
                    self.send_response(302)
                    self.send_header("Location", path.removeprefix("/redirect/"))
                    self.end_headers()
                    return None
                if path.lstrip("/") in host.files:
                    return self.send(200, host.files[path.lstrip("/")])
                return self.send(404, b"no", "text/plain")

        super().__init__(Handler)
        self.host = f"127.0.0.1:{self.port}"
        self.base = f"http://{self.host}/"


@pytest.fixture
def image_host():
    with ImageHost() as host:
        yield host


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # tenacity's waits, skipped


def allowed(host: ImageHost, **kwargs) -> Limits:
    """Tests fetch from 127.0.0.1, which is refused unless allowed explicitly."""
    return Limits.with_hosts([host.host], **kwargs)


def test_download_verify_resume(image_host, tmp_path):
    a, b, c = jpeg((1, 2, 3)), jpeg((4, 5, 6)), jpeg((7, 8, 9))
    image_host.files.update({"a.jpg": a, "b.jpg": b, "c.jpg": c})
    root = tmp_path / "images"
    root.mkdir()
    (root / "c.jpg").write_bytes(c)  # already there and right: not fetched again
    base = image_host.base
    items = [
        # md5 as some annotation files write it, upper case: compared case-insensitively
        DownloadItem(base + "a.jpg", root, "a.jpg", hashlib.md5(a).hexdigest().upper()),
        DownloadItem(base + "b.jpg", root, "b.jpg", "0" * 32),  # wrong md5
        DownloadItem(base + "gone.jpg", root, "gone.jpg", "1" * 32),  # 404
        DownloadItem(base + "c.jpg", root, "c.jpg", hashlib.md5(c).hexdigest()),
    ]
    report = download_all(items, workers=2, limits=allowed(image_host, retries=0))
    assert (report.downloaded, report.already_present) == (1, 1), report
    assert len(report.mismatched) == 1 and "b.jpg: md5" in report.mismatched[0]
    assert len(report.missing) == 1 and "HTTP 404" in report.missing[0]
    assert (root / "a.jpg").read_bytes() == a
    assert not (root / "b.jpg").exists(), "a mismatched file is never placed"
    assert not list(root.glob(".*.part"))
    assert "/c.jpg" not in image_host.requests

    before = len(image_host.requests)
    again = download_all(items, workers=2, limits=allowed(image_host, retries=0))
    assert again.already_present == 2 and again.downloaded == 0
    assert "/a.jpg" not in image_host.requests[before:], "verified files are not fetched again"


def test_server_errors_are_retried_client_errors_are_not(image_host, tmp_path, no_backoff):
    image_host.files["busy-a.jpg"] = jpeg()
    root = tmp_path / "images"
    items = [
        DownloadItem(image_host.base + "busy-a.jpg", root, "a.jpg"),
        DownloadItem(image_host.base + "gone.jpg", root, "gone.jpg"),
    ]
    report = download_all(items, workers=1, limits=allowed(image_host, retries=3))
    assert report.downloaded == 1 and (root / "a.jpg").read_bytes() == jpeg()
    assert image_host.requests.count("/busy-a.jpg") == 3, "503 is retried until served"
    assert image_host.requests.count("/gone.jpg") == 1, "a 404 does not come back by waiting"

    report = download_all(
        [DownloadItem(image_host.base + "busy-b.jpg", root, "b.jpg")],
        workers=1,
        limits=allowed(image_host, retries=1),
    )
    assert report.missing and "HTTP 503" in report.missing[0], "gives up after the retries"
    assert image_host.requests.count("/busy-b.jpg") == 2


def test_local_files_and_other_schemes_are_never_copied(image_host, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "dummy-secret-for-this-test")
    root = tmp_path / "images"
    urls = [
        "file:///proc/self/environ",
        "/etc/passwd",
        "data:image/jpeg;base64,/9j/4AAQSkZJRg==",
        "ftp://127.0.0.1/a.jpg",
        (tmp_path / "x.jpg").as_uri(),
    ]
    (tmp_path / "x.jpg").write_bytes(jpeg())
    items = [DownloadItem(url, root, f"{i}.jpg") for i, url in enumerate(urls)]
    report = download_all(items, workers=2, limits=allowed(image_host))
    assert len(report.refused) == len(urls) and report.downloaded == 0
    assert all("only http and https" in r for r in report.refused), report.refused
    assert "BIOCAP_EVAL_IMAGES" in report.refused[0]
    assert not root.exists() or not any(root.iterdir())


def test_private_addresses_are_refused_unless_allowed(image_host, tmp_path):
    image_host.files["a.jpg"] = jpeg()
    root = tmp_path / "images"
    for base in (image_host.base, image_host.base.replace("127.0.0.1", "localhost")):
        report = download_all([DownloadItem(base + "a.jpg", root, "a.jpg")])
        assert report.refused and "private or local address" in report.refused[0], report
    assert image_host.requests == [], "not one request reached the internal host"

    # a redirect from an allowed host to one that is not (same address, another port)
    with ImageHost() as inner:
        inner.files["secret.jpg"] = jpeg()
        hop = f"{image_host.base}redirect/{inner.base}secret.jpg"
        report = download_all([DownloadItem(hop, root, "hop.jpg")], limits=allowed(image_host))
        assert report.refused and inner.host.split(":")[0] in report.refused[0], report
        assert inner.requests == []

    report = download_all(
        [DownloadItem(image_host.base + "a.jpg", root, "a.jpg")], limits=allowed(image_host)
    )
    assert report.downloaded == 1, "allowed explicitly: fetched"


@pytest.mark.parametrize(
    "name", ["../../escaped", "/abs/escaped", "a\x00b", "../..", "dir/../../escaped", "a\\b"]
)
def test_an_id_that_would_leave_the_image_root_is_refused_for_that_row_only(
    image_host, tmp_path, name
):
    image_host.files["a.jpg"] = jpeg()
    root = tmp_path / "deep" / "images"
    items = [
        DownloadItem(image_host.base + "a.jpg", root, f"{name}.jpg"),
        DownloadItem(image_host.base + "a.jpg", root, "good.jpg"),
    ]
    report = download_all(items, workers=1, limits=allowed(image_host))
    assert report.downloaded == 1 and (root / "good.jpg").exists()
    assert len(report.refused) == 1 and repr(f"{name}.jpg") in report.refused[0]
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {root.relative_to(tmp_path) / "good.jpg"}


@pytest.mark.parametrize(
    "path,reason",
    [
        ("html.jpg", "text/html, not an image"),
        ("not-an-image.jpg", "not a readable image"),
        ("big.jpg", "Content-Length 1000000000 is above the cap"),
        ("endless.jpg", "above the cap of 65536 bytes"),
    ],
)
def test_answers_that_are_not_an_image_are_refused(image_host, tmp_path, path, reason):
    root = tmp_path / "images"
    limits = allowed(image_host, max_bytes=65536, retries=0)
    report = download_all([DownloadItem(image_host.base + path, root, "x.jpg")], limits=limits)
    assert report.refused and reason in report.refused[0], report
    assert not (root / "x.jpg").exists() and not list(root.glob(".*"))


def test_a_short_body_is_not_a_finished_file(image_host, tmp_path, no_backoff):
    root = tmp_path / "images"
    limits = allowed(image_host, retries=1)
    report = download_all(
        [DownloadItem(image_host.base + "short.jpg", root, "x.jpg")], limits=limits
    )
    assert report.missing and report.downloaded == 0, report
    assert image_host.requests.count("/short.jpg") == 2, "a dropped body is retried"
    assert not (root / "x.jpg").exists() and not list(root.glob(".*"))


def test_a_drip_fed_body_ends_at_the_deadline(image_host, tmp_path):
    root = tmp_path / "images"
    limits = allowed(image_host, deadline=1.0, timeout=5.0, retries=2)
    started = time.monotonic()
    report = download_all(
        [DownloadItem(image_host.base + "drip.jpg", root, "x.jpg")], limits=limits
    )
    assert time.monotonic() - started < 10
    assert report.refused and "not done after 1 s" in report.refused[0], report
    assert image_host.requests.count("/drip.jpg") == 1, "past the deadline: no retry"


KILLED_DOWNLOAD = """
import sys
from pathlib import Path
from biocap_assets.evaluation.download import DownloadItem, Limits, download_all
url, root, host = sys.argv[1:]
download_all([DownloadItem(url, Path(root), "x.jpg")], limits=Limits.with_hosts([host]))
"""


def test_a_killed_download_leaves_nothing_that_looks_done_and_the_next_run_cleans_up(
    image_host, tmp_path
):
    """SIGKILL mid-file (a preempted pod): what is left is the temporary .part file only,
    never x.jpg; the next run fetches the file whole and leaves no .part behind."""
    whole = jpeg((10, 20, 30)) + b"\0" * 20_000  # a JPEG with trailing padding, ~20 kB
    image_host.files["stalls-once.jpg"] = whole
    root = tmp_path / "images"
    url = image_host.base + "stalls-once.jpg"
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_DOWNLOAD, url, str(root), image_host.host],
        start_new_session=True,
    )
    part = root / ".x.jpg.part"
    try:
        deadline = time.monotonic() + 30
        while not (part.exists() and part.stat().st_size > 0):
            assert worker.poll() is None and time.monotonic() < deadline, "no partial file"
            time.sleep(0.05)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    assert part.exists() and not (root / "x.jpg").exists(), "only the temporary file is left"

    report = download_all(
        [DownloadItem(url, root, "x.jpg", hashlib.md5(whole).hexdigest())],
        limits=allowed(image_host, retries=0),
    )
    assert report.downloaded == 1, report
    assert (root / "x.jpg").read_bytes() == whole
    assert not list(root.glob(".*.part")), "the leftover was replaced and removed"
