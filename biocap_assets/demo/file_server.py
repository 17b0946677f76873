"""The demo's benchmark images over HTTP on loopback, as a real image host would serve them.

The image download fetches only ``http(s)`` URLs (a local path is never copied), so the
demo serves its "remote" image folder the way the demo wiki is served: from a thread on
127.0.0.1, for as long as the download runs.
"""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

from biocap_assets.common.loopback import LoopbackServer


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class FolderServer(LoopbackServer):
    def __init__(self, folder: str | Path):
        super().__init__(functools.partial(_QuietHandler, directory=str(folder)))

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}/"
