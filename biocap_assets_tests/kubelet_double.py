"""A test double of the Kubernetes API that runs each pod's container on this machine.

No cluster is reachable from the test machines. This double stands in for the API server
and kubelet at the boundary the k8s launcher talks to (``CoreV1Api``): creating a pod
starts its container's command as a local process with the pod's environment, reading the
pod reports its phase and container state as the API would (``Pending`` until started,
``Running``, then ``Succeeded`` or ``Failed`` with the exit code and the termination
message), and the log endpoint streams the process's output with timestamps, the way
``read_namespaced_pod_log(follow=True, timestamps=True)`` does. The image is ignored:
``python`` in the command is this interpreter. A PersistentVolumeClaim is a folder under
``claims`` (one per claim, shared by the pods that mount it); a variable whose value lies
under a claim's mount path points into that folder instead (``readOnly`` is not enforced).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from datetime import UTC, datetime

from biocap_assets_tests.ports import free_port


class _ApiClient:
    @staticmethod
    def sanitize_for_serialization(obj):
        return obj


class KubeletDouble:
    TERMINATION_LOG = "/dev/termination-log"

    def __init__(self, pending_reads: int = 1) -> None:
        self.api_client = _ApiClient()
        self.claims = tempfile.mkdtemp(prefix="claims-")
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
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in body["spec"].get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        mounts = {
            m["mountPath"]: os.path.join(self.claims, claims[m["name"]])
            for m in container.get("volumeMounts", [])
            if m["name"] in claims
        }
        env = {**os.environ}
        for item in container.get("env", []):
            value = item["value"]
            for mount, folder in mounts.items():
                if value == mount or value.startswith(mount + "/"):
                    os.makedirs(folder, exist_ok=True)
                    value = folder + value[len(mount) :]
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


class _PodList:
    def __init__(self, items: list[dict]) -> None:
        self.items = items


class JobControllerDouble:
    """``BatchV1Api`` for Indexed Jobs, over a :class:`KubeletDouble`: one pod per completion
    index, with ``JOB_COMPLETION_INDEX`` set and the index annotation the real controller
    adds. Cluster DNS is doubled too: the master host (``<job>-0.<job>.<ns>.svc...``)
    becomes 127.0.0.1 on a free port, since every "node" is a process on this machine.

    Pods start in reverse index order, so their process ids (which, on one host, decide
    the ranks under c10d's dynamic rendezvous) sort against their indexes: rank 0 must
    follow the completion index, not the start order.
    """

    INDEX = "batch.kubernetes.io/job-completion-index"

    def __init__(self, kubelet: KubeletDouble) -> None:
        self.kubelet = kubelet
        self.jobs: dict[str, list[str]] = {}
        self.services: list[str] = []
        self.policies: dict[str, dict] = {}
        self.deleted_jobs: list[str] = []
        self.uids: dict[str, str] = {}
        self._owners: dict[str, str] = {}  # Service / NetworkPolicy name: owner's uid
        kubelet.create_namespaced_service = self._create_service
        kubelet.list_namespaced_pod = self._list_pods

    def create_namespaced_job(self, namespace: str, body: dict) -> dict:
        name = body["metadata"]["name"]
        spec = body["spec"]
        port = free_port()
        pods = []
        for index in reversed(range(spec["completions"])):
            template = copy.deepcopy(spec["template"])
            container = template["spec"]["containers"][0]
            script = re.sub(
                r"--master_addr=\S+", "--master_addr=127.0.0.1", container["command"][-1]
            )
            script = re.sub(r"--master_port=\S+", f"--master_port={port}", script)
            container["command"][-1] = script.replace("exec python ", f"exec {sys.executable} ")
            container["env"] = [
                *container.get("env", []),
                {"name": "JOB_COMPLETION_INDEX", "value": str(index)},
            ]
            pod_name = f"{name}-{index}-{uuid.uuid4().hex[:5]}"
            template["metadata"] = {
                **template.get("metadata", {}),
                "name": pod_name,
                "labels": {**template["metadata"].get("labels", {}), "job-name": name},
                "annotations": {self.INDEX: str(index)},
            }
            self.kubelet.create_namespaced_pod(namespace, template)
            pods.append(pod_name)
        self.jobs[name] = pods[::-1]  # by index
        uid = str(uuid.uuid4())
        self.uids[name] = uid
        return {**body, "metadata": {**body["metadata"], "uid": uid}}

    def delete_namespaced_job(self, name: str, namespace: str, **_: object) -> None:
        for pod in self.jobs[name]:
            self.kubelet.delete_namespaced_pod(pod, namespace)
        self.deleted_jobs.append(name)
        # the garbage collector: what the Job owns goes with it
        uid = self.uids[name]
        self.services = [s for s in self.services if self._owners[s] != uid]
        self.policies = {k: v for k, v in self.policies.items() if self._owners[k] != uid}

    def _owner(self, body: dict) -> str:
        references = body["metadata"].get("ownerReferences") or [{}]
        return references[0].get("uid", "")

    # NetworkingV1Api: the run's NetworkPolicy is recorded (no traffic is filtered here;
    # test_network_policies.py checks what the policies allow). Services and policies are
    # deleted with the Job that owns them (ownerReferences), as the garbage collector does.
    def create_namespaced_network_policy(self, namespace: str, body: dict) -> dict:
        self.policies[body["metadata"]["name"]] = body
        self._owners[body["metadata"]["name"]] = self._owner(body)
        return body

    def _create_service(self, namespace: str, body: dict) -> dict:
        self.services.append(body["metadata"]["name"])
        self._owners[body["metadata"]["name"]] = self._owner(body)
        return body

    def _list_pods(self, namespace: str, label_selector: str = "") -> _PodList:
        job = label_selector.removeprefix("job-name=")
        names = self.jobs.get(job, [])
        return _PodList([self.kubelet.read_namespaced_pod(n, namespace) for n in names])


# The API calls the launcher makes, as RBAC names them: (resource, verb).
RBAC_OF_CALL = {
    "create_namespaced_pod": ("pods", "create"),
    "read_namespaced_pod": ("pods", "get"),
    "read_namespaced_pod_log": ("pods/log", "get"),
    "delete_namespaced_pod": ("pods", "delete"),
    "list_namespaced_pod": ("pods", "list"),
    "create_namespaced_job": ("jobs", "create"),
    "delete_namespaced_job": ("jobs", "delete"),
    "create_namespaced_service": ("services", "create"),
    "create_namespaced_network_policy": ("networkpolicies", "create"),
}


class ApiRecorder:
    """Hands the launcher a double and records each API method it calls (not the calls
    the doubles make among themselves), so a test can hold them to the RBAC we ship."""

    def __init__(self, target: object, calls: set[str]) -> None:
        self._target, self._calls = target, calls

    def __getattr__(self, name: str):
        attribute = getattr(self._target, name)
        if name.startswith("_") or not callable(attribute):
            return attribute
        if name not in RBAC_OF_CALL:
            raise AssertionError(f"the launcher calls {name}: add it to RBAC_OF_CALL")

        def record(*args, **kwargs):
            self._calls.add(name)
            return attribute(*args, **kwargs)

        return record
