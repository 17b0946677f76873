"""A chat-completions server on 127.0.0.1 for tests: real HTTP, scripted answers."""

import json
import threading
import time
from collections.abc import Callable

from biocap_assets.common.loopback import KeepAliveHandler, LoopbackServer


class ChatServer(LoopbackServer):
    """``answer(payload, attempt) -> (status, body_bytes, delay[, headers])`` decides each
    response."""

    def __init__(self, answer: Callable[[dict, int], tuple[int, bytes, float]]):
        self.answer = answer
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _handler(self):
        server = self

        class Handler(KeepAliveHandler):
            def do_POST(self):  # noqa: N802
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = payload["messages"][0]["content"][-1]["text"]
                with server._lock:
                    attempt = 1 + sum(
                        1
                        for r in server.requests
                        if r["messages"][0]["content"][-1]["text"] == text
                    )
                    server.requests.append(payload)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, body, delay, *headers = server.answer(payload, attempt)
                    time.sleep(delay)
                    self.send_response(status)
                    for name, value in (headers[0] if headers else {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return Handler


def completion(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
