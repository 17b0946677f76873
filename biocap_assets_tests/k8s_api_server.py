"""A Kubernetes API-shaped HTTP server on 127.0.0.1 for the preflight tests: ``/version``
and ``GET`` of PersistentVolumeClaims, in the API's JSON (a ``Status`` object for a
missing one), so the kubernetes client's own code reads them. No cluster is reachable
here; this answers only what ``biocap check`` asks.
"""

from __future__ import annotations

import json
import re
from http.server import BaseHTTPRequestHandler

from biocap_assets.common.loopback import LoopbackServer

# GET /version as an API server of Kubernetes 1.33 answers it (every field the client's
# VersionInfo requires)
VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0",
    "gitCommit": "60a317eadfcb839692a5eab88b2096f4d708f4f",
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T13:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_PVC = re.compile(r"^/api/v1/namespaces/([^/]+)/persistentvolumeclaims/([^/?]+)")


def kubeconfig(server: str) -> str:
    """A kube config whose one context talks to ``server`` with a bearer token."""
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: abc}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )


def claim(name: str, namespace: str, modes: list[str], phase: str = "Bound") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"accessModes": modes, "resources": {"requests": {"storage": "10Gi"}}},
        "status": {"phase": phase, "accessModes": modes},
    }


class KubeApiServer(LoopbackServer):
    def __init__(self, claims: list[dict]):
        self.claims = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in claims}
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self) -> str:
        return kubeconfig(self.url)

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path.startswith("/version"):
                    return self._send(200, VERSION)
                match = _PVC.match(self.path)
                found = api.claims.get(match.groups()) if match else None
                if found is not None:
                    return self._send(200, found)
                name = match.group(2) if match else self.path
                return self._send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": f'persistentvolumeclaims "{name}" not found',
                        "reason": "NotFound",
                        "code": 404,
                    },
                )

        return Handler
