"""What a worker pod is doing, and why it failed, from the Kubernetes API's pod objects.

Pure functions over the API's JSON (``V1Pod`` serialized), so the reasons a step fails
with are tested on pod objects without a cluster: a pod stuck ``Pending`` (no node with
a free GPU, an image that cannot be pulled) fails the step after a timeout with the
scheduler's or kubelet's own message; ``OOMKilled`` and ``Evicted`` say so, with the
memory limit that was hit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Waiting reasons that never clear up by waiting: fail at once, without the timeout.
FATAL_WAITING = {"InvalidImageName", "ErrImageNeverPull", "CreateContainerError"}


class PodFailure(Exception):
    """The pod cannot or did not finish its work; ``str(exc)`` says why."""


@dataclass(frozen=True)
class PodStatus:
    phase: str
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def _limits(pod: Mapping, container: str) -> Mapping:
    for spec in pod.get("spec", {}).get("containers", []):
        if spec.get("name") == container:
            return spec.get("resources", {}).get("limits", {})
    return {}


def _container_statuses(pod: Mapping) -> list[Mapping]:
    status = pod.get("status", {})
    return [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]


def pending_reason(pod: Mapping) -> str:
    """Why a Pending pod has not started: unschedulable, image pull, config error."""
    for container in _container_statuses(pod):
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] != "ContainerCreating":
            message = waiting.get("message", "").strip()
            return f"container {container['name']}: {waiting['reason']}" + (
                f": {message}" if message else ""
            )
    for condition in pod.get("status", {}).get("conditions", []):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return (
                f"not scheduled ({condition.get('reason', 'Unschedulable')}): "
                f"{condition.get('message', '').strip()}"
            )
    return "Pending (no reason reported yet)"


def failure_reason(pod: Mapping) -> str:
    """Why a Failed pod failed: eviction, OOMKilled with the limit, or the exit code."""
    status = pod.get("status", {})
    if status.get("reason") == "Evicted":
        return f"the pod was evicted: {status.get('message', '').strip()}"
    reasons = []
    for container in _container_statuses(pod):
        terminated = (container.get("state") or {}).get("terminated") or {}
        if not terminated or terminated.get("exitCode", 0) == 0:
            continue
        name, reason = container["name"], terminated.get("reason", "Error")
        if reason == "OOMKilled":
            limit = _limits(pod, name).get("memory", "no limit")
            reasons.append(
                f"container {name} was OOMKilled (exit {terminated.get('exitCode')}): it "
                f"went past its memory limit ({limit}); give the worker more memory or "
                "smaller batches"
            )
        else:
            message = (terminated.get("message") or "").strip()
            reasons.append(
                f"container {name} exited with {terminated.get('exitCode')} ({reason})"
                + (f": {message}" if message else "")
            )
    if reasons:
        return "; ".join(reasons)
    if status.get("reason") or status.get("message"):
        return f"{status.get('reason', 'Failed')}: {status.get('message', '').strip()}"
    return "the pod failed without a reason"


def pod_status(pod: Mapping) -> PodStatus:
    status = pod.get("status", {})
    phase = status.get("phase", "Unknown")
    if phase == "Failed":
        return PodStatus(phase, failure_reason(pod))
    if phase == "Pending":
        return PodStatus(phase, pending_reason(pod))
    return PodStatus(phase)


def fatal_while_pending(pod: Mapping) -> bool:
    return any(
        ((c.get("state") or {}).get("waiting") or {}).get("reason") in FATAL_WAITING
        for c in _container_statuses(pod)
    )


def wait_until_started(
    read_pod: Callable[[], Mapping],
    pending_timeout: float,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Mapping:
    """Poll until the pod leaves Pending; raise :class:`PodFailure` past the timeout."""
    started = clock()
    while True:
        pod = read_pod()
        status = pod_status(pod)
        if status.phase == "Failed":
            raise PodFailure(status.reason)
        if status.phase != "Pending":
            return pod
        waited = clock() - started
        if fatal_while_pending(pod):
            raise PodFailure(status.reason)
        if waited > pending_timeout:
            raise PodFailure(
                f"still Pending after {waited:.0f}s (pending timeout {pending_timeout:.0f}s): "
                f"{status.reason}"
            )
        sleep(poll)


def wait_until_finished(
    read_pod: Callable[[], Mapping],
    timeout: float,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Mapping:
    """Poll until Succeeded (returned) or Failed (:class:`PodFailure` with the reason)."""
    started = clock()
    while True:
        pod = read_pod()
        status = pod_status(pod)
        if status.phase == "Succeeded":
            return pod
        if status.phase == "Failed":
            raise PodFailure(status.reason)
        if clock() - started > timeout:
            raise PodFailure(f"did not finish within {timeout:.0f}s (phase {status.phase})")
        sleep(poll)
