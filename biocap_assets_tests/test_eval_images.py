"""Benchmark image download: md5 verified, resumable, failures counted (server on 127.0.0.1)."""

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from biocap_assets.evaluation.download import DownloadItem, download_all, resolve


@pytest.fixture
def image_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            if self.path.startswith("/busy-") and requests.count(self.path) < 3:
                self.send_error(503)  # the first two tries fail, the third is served
                return
            super().do_GET()

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", served, requests
    server.shutdown()
    server.server_close()


def test_download_verify_resume(image_server, tmp_path):
    base, served, requests = image_server
    for name, data in (("a.jpg", b"image a"), ("b.jpg", b"image b"), ("c.jpg", b"image c")):
        (served / name).write_bytes(data)
    md5 = {n: hashlib.md5((served / n).read_bytes()).hexdigest() for n in ("a.jpg", "b.jpg")}
    root = tmp_path / "images"
    (root / "c.jpg").parent.mkdir(parents=True)
    (root / "c.jpg").write_bytes(b"image c")  # already there and right: not fetched again
    items = [
        DownloadItem(resolve("a.jpg", base), root / "a.jpg", md5["a.jpg"]),
        DownloadItem(resolve("b.jpg", base), root / "b.jpg", "0" * 32),  # wrong md5
        DownloadItem(base + "gone.jpg", root / "gone.jpg", "1" * 32),  # 404
        DownloadItem(base + "c.jpg", root / "c.jpg", hashlib.md5(b"image c").hexdigest()),
    ]
    report = download_all(items, workers=2, retries=0)
    assert (report.downloaded, report.already_present) == (1, 1)
    assert len(report.mismatched) == 1 and "b.jpg: md5" in report.mismatched[0]
    assert len(report.missing) == 1 and "HTTP 404" in report.missing[0]
    assert (root / "a.jpg").read_bytes() == b"image a"
    assert not (root / "b.jpg").exists(), "a mismatched file is never placed"
    assert not list(root.glob(".*.part"))
    assert "/c.jpg" not in requests

    before = len(requests)
    again = download_all(items, workers=2, retries=0)
    assert again.already_present == 2 and again.downloaded == 0
    assert "/a.jpg" not in requests[before:], "resumes: verified files are not fetched again"


def test_server_errors_are_retried_client_errors_are_not(image_server, tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # tenacity's backoff, skipped
    base, served, requests = image_server
    (served / "busy-a.jpg").write_bytes(b"image a")
    root = tmp_path / "images"
    items = [
        DownloadItem(base + "busy-a.jpg", root / "a.jpg", hashlib.md5(b"image a").hexdigest()),
        DownloadItem(base + "gone.jpg", root / "gone.jpg"),
        DownloadItem((tmp_path / "no-such-file.jpg").as_uri(), root / "local.jpg"),
    ]
    report = download_all(items, workers=1, retries=3)
    assert report.downloaded == 1 and (root / "a.jpg").read_bytes() == b"image a"
    assert requests.count("/busy-a.jpg") == 3, "503 is retried until served"
    assert requests.count("/gone.jpg") == 1, "a 404 does not come back by waiting"
    assert len(report.missing) == 2
    assert any("no-such-file.jpg" in m and "FileNotFoundError" in m for m in report.missing)

    report = download_all([DownloadItem(base + "busy-b.jpg", root / "b.jpg")], workers=1, retries=1)
    assert report.missing and "HTTP 503" in report.missing[0], "gives up after the retries"
    assert requests.count("/busy-b.jpg") == 2
