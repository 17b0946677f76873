"""A test double of the Kubernetes API that runs each pod's container on this machine.

No cluster is reachable from the test machines. This double stands in for the API server
and kubelet at the boundary the k8s launcher talks to (``CoreV1Api``): creating a pod
starts its container's command as a local process with the pod's environment, reading the
pod reports its phase and container state as the API would (``Pending`` until started,
``Running``, then ``Succeeded`` or ``Failed`` with the exit code and the termination
message), and the log endpoint streams the process's output with timestamps, the way
``read_namespaced_pod_log(follow=True, timestamps=True)`` does. The image is ignored:
``python`` in the command is this interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime


class _ApiClient:
    @staticmethod
    def sanitize_for_serialization(obj):
        return obj


class KubeletDouble:
    TERMINATION_LOG = "/dev/termination-log"

    def __init__(self, pending_reads: int = 1) -> None:
        self.api_client = _ApiClient()
        self.pods: dict[str, dict] = {}
        self.deleted: list[str] = []
        self.pending_reads = pending_reads
        self._lock = threading.Lock()

    # -- CoreV1Api surface used by the launcher ------------------------------------------

    def create_namespaced_pod(self, namespace: str, body: dict) -> dict:
        name = body["metadata"]["name"]
        container = body["spec"]["containers"][0]
        handle, termination = tempfile.mkstemp(prefix="termination-")
        os.close(handle)
        env = {**os.environ}
        for item in container.get("env", []):
            value = item["value"]
            env[item["name"]] = termination if value == self.TERMINATION_LOG else value
        command = [sys.executable if c == "python" else c for c in container["command"]]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        lines: list[bytes] = []
        done = threading.Event()

        def pump() -> None:
            for line in process.stdout:
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                with self._lock:
                    lines.append(f"{stamp} ".encode() + line)
            process.wait()
            done.set()

        threading.Thread(target=pump, daemon=True).start()
        self.pods[name] = {
            "body": body,
            "process": process,
            "lines": lines,
            "done": done,
            "termination": termination,
            "reads": 0,
        }
        return body

    def read_namespaced_pod(self, name: str, namespace: str) -> dict:
        pod = self.pods[name]
        pod["reads"] += 1
        container = pod["body"]["spec"]["containers"][0]["name"]
        body = {"metadata": pod["body"]["metadata"], "spec": pod["body"]["spec"]}
        if pod["reads"] <= self.pending_reads:
            state = {"waiting": {"reason": "ContainerCreating"}}
            return {
                **body,
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [{"name": container, "state": state}],
                },
            }
        if not pod["done"].is_set():
            return {
                **body,
                "status": {
                    "phase": "Running",
                    "containerStatuses": [{"name": container, "state": {"running": {}}}],
                },
            }
        code = pod["process"].returncode
        with open(pod["termination"], encoding="utf-8", errors="replace") as f:
            message = f.read()
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
        if message:
            terminated["message"] = message
        return {
            **body,
            "status": {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [{"name": container, "state": {"terminated": terminated}}],
            },
        }

    def read_namespaced_pod_log(self, name: str, namespace: str, **_: object):
        pod = self.pods[name]

        def follow():
            sent = 0
            while True:
                finished = pod["done"].is_set()
                with self._lock:
                    new = pod["lines"][sent:]
                sent += len(new)
                yield from new
                if finished and not new:
                    return
                pod["done"].wait(0.05)

        return follow()

    def delete_namespaced_pod(self, name: str, namespace: str) -> None:
        pod = self.pods[name]
        if pod["process"].poll() is None:
            pod["process"].kill()
        os.unlink(pod["termination"])
        self.deleted.append(name)
