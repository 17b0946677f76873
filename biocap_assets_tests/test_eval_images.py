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
