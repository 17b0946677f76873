"""Run workers through Dagster Pipes.

Heavy work (scraping, inference, training, evaluation embeddings) runs in a
worker process, ``python -m biocap_assets.workers.<name>``, never in the asset
body. The worker receives its parameters as Pipes extras and reports logs,
metadata, custom messages and asset checks back. ``local`` mode runs it as a
subprocess (``PipesSubprocessClient``, the embedded default); ``k8s`` mode runs
it as a pod built by ``resources/k8s.py`` (GPUs for the GPU workers), with Pipes
over the pod's logs (dagster_k8s' log reader) and a watch that fails the step with
the reason when the pod stays Pending, is OOMKilled or evicted (``k8s_watch.py``).
Both go through the same ``run`` call; multi-node training goes through
``run_training_job`` (an Indexed Job, Pipes from rank 0).
"""

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import dagster as dg
from pydantic import Field

from biocap_assets.common.contract import ERROR_FILE_ENV, NO_RETRY_MARK
from biocap_assets.common.secrets import redact
from biocap_assets.resources.k8s import (
    DEFAULT_GPU_WORKERS,
    PodOptions,
    owned_by,
    pod_manifest,
    training_manifests,
)
from biocap_assets.resources.k8s_watch import (
    PodFailure,
    pod_status,
    wait_until_finished,
    wait_until_started,
)

WORKER_PACKAGE = "biocap_assets.workers"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def worker_command(
    worker: str, python: str, args: Sequence[str] = (), nproc_per_node: int = 0
) -> list[str]:
    """The command line that starts a worker module (under torchrun with nproc_per_node)."""
    if not worker.isidentifier():
        raise ValueError(f"worker name {worker!r} must be a module name")
    module = [f"{WORKER_PACKAGE}.{worker}", *args]
    if nproc_per_node:
        return [
            python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc_per_node}",
            "-m",
            *module,
        ]
    return [python, "-m", *module]


class LauncherResource(dg.ConfigurableResource):
    """Where workers run: ``local`` subprocesses, or ``k8s`` pods (GPU workers get GPUs)."""

    mode: Literal["local", "k8s"] = Field(
        default="local", description="local: subprocess workers; k8s: one pod per worker run"
    )
    python: str = Field(default="", description="interpreter for workers; default: this one")
    env: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables for workers"
    )
    image: str = Field(default="", description="k8s: the worker image (with the [gpu] extra)")
    namespace: str = Field(default="biocap", description="k8s: namespace of worker pods")
    service_account: str = Field(default="biocap-worker")
    gpus: int = Field(default=1, description="k8s: nvidia.com/gpu per GPU worker pod")
    gpu_workers: list[str] = Field(default_factory=lambda: list(DEFAULT_GPU_WORKERS))
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    )
    s3_secret: str = Field(default="biocap-s3", description="k8s: Secret with AWS_* keys")
    model_cache: str = Field(
        default="biocap-models",
        description="k8s: claim of the shared Hugging Face cache at /models ('' for none)",
    )
    eval_volume: str = Field(
        default="biocap-eval",
        description="k8s: claim of the evaluation data at /eval ('' for none)",
    )
    ephemeral_storage: str = Field(
        default=PodOptions.ephemeral_storage,
        description="k8s: node-local disk a CPU worker pod requests (and may use)",
    )
    gpu_ephemeral_storage: str = Field(
        default=PodOptions.gpu_ephemeral_storage,
        description="k8s: node-local disk a GPU worker pod requests (and may use)",
    )
    pod_wait_timeout: float = Field(
        default=24 * 3600.0, description="k8s: longest a worker pod may run"
    )
    pending_timeout: float = Field(
        default=900.0,
        description="k8s: seconds a pod may stay Pending (no GPU node, image pull) before "
        "the step fails with the reason",
    )
    keep_failed_pods: bool = Field(default=False, description="k8s: keep pods for inspection")

    def pod_options(self) -> PodOptions:
        return PodOptions(
            image=self.image,
            namespace=self.namespace,
            service_account=self.service_account,
            gpus=self.gpus,
            gpu_workers=tuple(self.gpu_workers),
            node_selector=dict(self.node_selector),
            tolerations=tuple(dict(t) for t in self.tolerations),
            s3_secret=self.s3_secret,
            model_cache=self.model_cache,
            eval_volume=self.eval_volume,
            ephemeral_storage=self.ephemeral_storage,
            gpu_ephemeral_storage=self.gpu_ephemeral_storage,
        )

    def model_cache_label(self) -> str:
        """Where the model-running workers find their weights, in words."""
        if self.mode == "k8s":
            if not self.model_cache:
                return "none shared: each worker pod downloads into its own filesystem"
            return f"PersistentVolumeClaim {self.namespace}/{self.model_cache} at /models"
        env = {**os.environ, **self.env}
        from biocap_assets.training.pretrained import hub_cache

        return f"this machine's Hugging Face cache ({hub_cache(env)})"

    def run(
        self,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        worker: str,
        extras: Mapping[str, object] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        nproc_per_node: int = 0,
    ) -> dg.PipesClientCompletedInvocation:
        """Run ``worker`` to completion; raises if it fails, with the worker's error.

        ``nproc_per_node`` starts it under torchrun with that many processes (training).
        """
        if self.mode == "k8s":
            return self._run_k8s(context, worker, extras, args, env, nproc_per_node)
        command = worker_command(worker, self.python or sys.executable, args, nproc_per_node)
        context.log.info(f"launching worker {worker} ({self.mode}): {' '.join(command)}")
        with tempfile.TemporaryDirectory(prefix="biocap-worker-") as scratch:
            error_file = os.path.join(scratch, "error.txt")
            client = dg.PipesSubprocessClient(
                env={**self.env, **(env or {}), ERROR_FILE_ENV: error_file}
            )
            try:
                return client.run(context=context, command=command, extras=dict(extras or {}))
            except Exception as exc:
                # The client raises a non-public error type when the process exits non-zero;
                # what matters is whether the worker said why (its error file).
                reason = _read(error_file)
                exited = "failed with code" in str(exc)
                if isinstance(exc, dg.Failure) or not (reason or exited):
                    raise
                permanent = reason.startswith(NO_RETRY_MARK)
                raise dg.Failure(
                    description=redact(
                        f"worker {worker} failed: "
                        + (
                            reason.removeprefix(NO_RETRY_MARK)
                            or f"{exc} (no error reported; see the step's stderr)"
                        )
                    ),
                    allow_retries=not permanent,
                    metadata={"worker": worker, "command": " ".join(command)},
                ) from exc

    def _run_k8s(
        self,
        context,
        worker: str,
        extras,
        args: Sequence[str],
        env: Mapping[str, str] | None,
        nproc_per_node: int = 0,
    ) -> dg.PipesClientCompletedInvocation:
        """One pod per worker run, Pipes over its logs; needs a cluster (none reachable here)."""
        if not self.image:
            raise dg.Failure(
                "launcher mode k8s needs the GPU worker image: set BIOCAP_WORKER_IMAGE "
                "(see deploy/README.md)"
            )
        command = worker_command(worker, "python", args, nproc_per_node)
        name = pod_name(worker, context.run.run_id)
        core = _core_api()
        session_cm, reader = _pipes_session(context, extras)
        with session_cm as session:
            body = pod_manifest(
                name,
                worker,
                command,
                self.pod_options(),
                {**self._pod_env(env), **session.get_bootstrap_env_vars()},
                run_id=context.run.run_id,
            )
            context.log.info(f"launching worker {worker} as pod {name} in {self.namespace}")
            core.create_namespaced_pod(self.namespace, body)
            run_pod(
                read_pod=lambda: _as_dict(core, core.read_namespaced_pod(name, self.namespace)),
                delete_pod=lambda: core.delete_namespaced_pod(name, self.namespace),
                on_running=lambda: reader.consume_pod_logs(
                    context=context, core_api=core, pod_name=name, namespace=self.namespace
                ),
                what=f"worker {worker} (pod {self.namespace}/{name})",
                pending_timeout=self.pending_timeout,
                run_timeout=self.pod_wait_timeout,
                keep_failed=self.keep_failed_pods,
            )
        return dg.PipesClientCompletedInvocation(session)

    def run_training_job(
        self,
        context,
        extras: Mapping[str, object],
        nnodes: int,
        gpus_per_node: int,
    ) -> dg.PipesClientCompletedInvocation:
        """Multi-node training: an Indexed Job of ``nnodes`` torchrun pods, its Service and
        its NetworkPolicy (only the run's own pods reach each other).

        Every pod gets the same Pipes bootstrap; only global rank 0 opens the channel
        (the train worker checks RANK), and its logs are the ones read.
        """
        if self.mode != "k8s":
            raise dg.Failure(
                f"nnodes={nnodes}: multi-node training runs as a Kubernetes Job "
                "(BIOCAP_LAUNCHER=k8s); locally, use nproc_per_node"
            )
        if not self.image:
            raise dg.Failure(
                "launcher mode k8s needs the GPU worker image: set BIOCAP_WORKER_IMAGE "
                "(see deploy/README.md)"
            )
        name = pod_name("train", context.run.run_id)
        core = _core_api()
        batch = _batch_api(core)
        session_cm, reader = _pipes_session(context, extras)
        with session_cm as session:
            env = {**self._pod_env(None), **session.get_bootstrap_env_vars()}
            service, policy, job = training_manifests(
                name, self.pod_options(), nnodes, gpus_per_node, [], env
            )
            networking = _networking_api(core)
            # The Job first; its Service and NetworkPolicy are owned by it, so Kubernetes'
            # garbage collector removes them with it (after a failure here, on deletion,
            # or when ttlSecondsAfterFinished removes a Job kept for inspection).
            created = _as_dict(core, batch.create_namespaced_job(self.namespace, job))
            try:
                core.create_namespaced_service(self.namespace, owned_by(service, created))
                networking.create_namespaced_network_policy(
                    self.namespace, owned_by(policy, created)
                )
            except Exception:
                batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
                raise
            context.log.info(
                f"launched training Job {self.namespace}/{name}: {nnodes} nodes x "
                f"{gpus_per_node} GPUs"
            )
            selector = f"job-name={name}"

            def pods() -> list[dict]:
                found = core.list_namespaced_pod(self.namespace, label_selector=selector)
                return [_as_dict(core, p) for p in found.items]

            def delete() -> None:  # its pods, Service and NetworkPolicy go with it
                batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")

            run_job(
                list_pods=pods,
                delete=delete,
                on_rank0_running=lambda rank0: reader.consume_pod_logs(
                    context=context,
                    core_api=core,
                    pod_name=rank0,
                    namespace=self.namespace,
                ),
                nnodes=nnodes,
                what=f"training Job {self.namespace}/{name}",
                pending_timeout=self.pending_timeout,
                run_timeout=self.pod_wait_timeout,
                keep_failed=self.keep_failed_pods,
            )
        return dg.PipesClientCompletedInvocation(session)

    def _pod_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        # a failing worker writes its error where Kubernetes reads the termination
        # message, so the step fails with the worker's own words
        return {**self.env, **(env or {}), ERROR_FILE_ENV: "/dev/termination-log"}


def pod_name(worker: str, run_id: str) -> str:
    """A unique DNS-1123 name: several workers of one step (buckets) run side by side."""
    return f"biocap-{worker.replace('_', '-')}-{run_id[:8]}-{uuid.uuid4().hex[:6]}".lower()


def _core_api():
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()
    return k8s_client.CoreV1Api()


def _batch_api(core):
    """Jobs through the same configured API client as ``core`` (no second config load)."""
    from kubernetes import client as k8s_client

    return k8s_client.BatchV1Api(core.api_client)


def _networking_api(core):
    """NetworkPolicies through the same configured API client as ``core``."""
    from kubernetes import client as k8s_client

    return k8s_client.NetworkingV1Api(core.api_client)


def _as_dict(core, obj) -> dict:
    """The API's JSON form of a client object (what k8s_watch reads)."""
    return core.api_client.sanitize_for_serialization(obj)


def _pipes_session(context, extras):
    """A Pipes session whose messages come from a pod's logs; returns (session cm, reader)."""
    from dagster_k8s.pipes import PipesK8sPodLogsMessageReader

    reader = PipesK8sPodLogsMessageReader()
    session = dg.open_pipes_session(
        context=context,
        extras=dict(extras or {}),
        context_injector=dg.PipesEnvContextInjector(),
        message_reader=reader,
    )
    return session, reader


def run_pod(
    read_pod: Callable[[], Mapping],
    delete_pod: Callable[[], None],
    on_running: Callable[[], None],
    what: str,
    pending_timeout: float,
    run_timeout: float,
    keep_failed: bool,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Mapping:
    """Wait for a pod to start, follow it, wait for its end; fail with the reason.

    The pod is deleted afterwards, unless it failed and ``keep_failed`` is set.
    """
    with _failing_with_reason(what, delete_pod, keep_failed):
        wait_until_started(read_pod, pending_timeout, poll, clock, sleep)
        on_running()
        return wait_until_finished(read_pod, run_timeout, poll, clock, sleep)


def run_job(
    list_pods: Callable[[], list[Mapping]],
    delete: Callable[[], None],
    on_rank0_running: Callable[[str], None],
    nnodes: int,
    what: str,
    pending_timeout: float,
    run_timeout: float,
    keep_failed: bool,
    poll: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """The Job's pods as one: every one must start and succeed; the first failure names
    its pod and reason. Rank 0 (completion index 0) is followed for Pipes."""
    with _failing_with_reason(what, delete, keep_failed):
        pods = _job_pods(list_pods, nnodes, pending_timeout, poll, clock, sleep)
        for pod in pods.values():
            name = pod["metadata"]["name"]
            try:
                wait_until_started(
                    lambda name=name: _by_name(list_pods(), name),
                    pending_timeout,
                    poll,
                    clock,
                    sleep,
                )
            except PodFailure as exc:
                raise PodFailure(f"pod {name}: {exc}") from exc
        on_rank0_running(pods[0]["metadata"]["name"])
        started = clock()
        while True:
            current = [_by_name(list_pods(), p["metadata"]["name"]) for p in pods.values()]
            statuses = [pod_status(p) for p in current]
            for pod, status in zip(current, statuses, strict=True):
                if status.phase == "Failed":
                    raise PodFailure(f"pod {pod['metadata']['name']}: {status.reason}")
            if all(s.phase == "Succeeded" for s in statuses):
                return
            if clock() - started > run_timeout:
                raise PodFailure(f"did not finish within {run_timeout:.0f}s")
            sleep(poll)


@contextmanager
def _failing_with_reason(what: str, delete: Callable[[], None], keep_failed: bool) -> Iterator:
    """A :class:`PodFailure` fails the step with its reason; the pods are deleted at the
    end, unless the work failed and ``keep_failed`` asks to keep them for inspection."""
    succeeded = False
    try:
        yield
        succeeded = True
    except PodFailure as exc:
        kept = " (kept for inspection)" if keep_failed else ""
        reason = str(exc)
        raise dg.Failure(
            description=redact(f"{what} failed: {reason.replace(NO_RETRY_MARK, '')}{kept}"),
            metadata={"reason": redact(reason), "kept": keep_failed},
            allow_retries=NO_RETRY_MARK not in reason,
        ) from None
    finally:
        if succeeded or not keep_failed:
            delete()


JOB_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def _job_pods(list_pods, nnodes, pending_timeout, poll, clock, sleep) -> dict[int, Mapping]:
    """The Job's pods by completion index, once the Job controller has made them all."""
    started = clock()
    while True:
        pods = {
            int(p["metadata"].get("annotations", {}).get(JOB_INDEX_ANNOTATION, -1)): p
            for p in list_pods()
        }
        if all(i in pods for i in range(nnodes)):
            return {i: pods[i] for i in range(nnodes)}
        if clock() - started > pending_timeout:
            raise PodFailure(
                f"only {len(pods)} of {nnodes} pods were created in {pending_timeout:.0f}s "
                "(quota or admission?)"
            )
        sleep(poll)


def _by_name(pods: list[Mapping], name: str) -> Mapping:
    for pod in pods:
        if pod["metadata"]["name"] == name:
            return pod
    raise PodFailure(f"pod {name} disappeared (deleted or evicted and garbage-collected)")
