"""An HTTP server on 127.0.0.1 for the life of a ``with`` block: the demo's wiki and image
host, and the tests' stand-ins for the services we talk to (hub, API server, chat)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """Serves ``handler`` from a background thread on 127.0.0.1 (a free port unless
    given); requests are handled in threads of their own."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0):
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
