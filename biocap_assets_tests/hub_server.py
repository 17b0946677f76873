"""A Hugging Face hub-shaped HTTP server on 127.0.0.1 for tests (``HF_ENDPOINT``).

The tests cannot reach the hub. This server answers the requests huggingface_hub's own
``snapshot_download`` and ``hf_hub_download`` make, in the hub's documented shapes: the
revision info (``/api/{models,datasets}/<repo>/revision/<rev>``), the recursive tree
listing (``/api/.../tree/<commit>``) and the file endpoint (``/<repo>/resolve/<rev>/<file>``,
``HEAD`` with ``X-Repo-Commit`` and ``ETag``, then ``GET``). Every request is recorded, so a
test can tell a cache hit (no request) from a download.
"""

from __future__ import annotations

import hashlib
import json
import re

from biocap_assets.common.loopback import KeepAliveHandler, LoopbackServer

_API = re.compile(r"^/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree)/([^/?]+)")
_RESOLVE = re.compile(r"^/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


class HubServer(LoopbackServer):
    """``repos``: ``{"owner/name": {"file": b"bytes"}}``; a dataset's key starts with
    ``dataset:``. Each repository has one commit, ``main``."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        super().__init__(self._handler())

    @staticmethod
    def commit(key: str) -> str:
        return hashlib.sha1(key.encode()).hexdigest()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _repo(self, kind: str, repo_id: str) -> tuple[str, dict[str, bytes]] | None:
        key = f"dataset:{repo_id}" if kind == "datasets" else repo_id
        files = self.repos.get(key)
        return (key, files) if files is not None else None

    def _handler(self):
        hub = self

        class Handler(KeepAliveHandler):
            def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _missing(self, code: str, head: bool) -> None:
                body = json.dumps({"error": code}).encode()
                self._send(
                    404, body, {"X-Error-Code": code, "Content-Type": "application/json"}, head
                )

            def _answer(self, head: bool) -> None:
                hub.requests.append((self.command, self.path))
                path = self.path.split("?", 1)[0]
                api = _API.match(path)
                if api:
                    kind, repo_id, what, _ = api.groups()
                    found = hub._repo(kind, repo_id)
                    if found is None:
                        return self._missing("RepoNotFound", head)
                    key, files = found
                    if what == "revision":
                        body = {
                            "id": repo_id,
                            "sha": hub.commit(key),
                            "siblings": [{"rfilename": name} for name in sorted(files)],
                        }
                    else:
                        body = [
                            {
                                "type": "file",
                                "path": name,
                                "size": len(data),
                                "oid": hashlib.sha1(data).hexdigest(),
                            }
                            for name, data in sorted(files.items())
                        ]
                    data = json.dumps(body).encode()
                    return self._send(200, data, {"Content-Type": "application/json"}, head)
                resolve = _RESOLVE.match(path)
                if resolve:
                    dataset, repo_id, _, name = resolve.groups()
                    found = hub._repo("datasets" if dataset else "models", repo_id)
                    if found is None:
                        return self._missing("RepoNotFound", head)
                    key, files = found
                    if name not in files:
                        return self._missing("EntryNotFound", head)
                    data = files[name]
                    headers = {
                        "X-Repo-Commit": hub.commit(key),
                        "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                        "Content-Type": "application/octet-stream",
                    }
                    return self._send(200, data, headers, head)
                return self._missing("NotFound", head)

            def do_GET(self):  # noqa: N802
                self._answer(head=False)

            def do_HEAD(self):  # noqa: N802
                self._answer(head=True)

        return Handler
