"""Run workers through Dagster Pipes.

Heavy work (scraping, inference, training, evaluation embeddings) runs in a
worker process, ``python -m biocap_assets.workers.<name>``, never in the asset
body. The worker receives its parameters as Pipes extras and reports logs,
metadata, custom messages and asset checks back. ``local`` mode runs it as a
subprocess (``PipesSubprocessClient``, the embedded default); ``k8s`` mode runs
it as a pod (``dagster_k8s.PipesK8sClient``) built by ``resources/k8s.py``, with
GPUs for the GPU workers. Both go through the same ``run`` call.
"""

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Literal

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError
from pydantic import Field

from biocap_assets.resources.k8s import DEFAULT_GPU_WORKERS, PodOptions, worker_pod_spec
from biocap_assets.workers.runtime import ERROR_FILE_ENV

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
        )

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
            except DagsterPipesExecutionError as exc:
                reason = _read(error_file) or f"{exc} (no error reported; see the step's stderr)"
                raise dg.Failure(
                    description=f"worker {worker} failed: {reason}",
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
        """One pod per worker run; needs a cluster (not reachable from the test machines)."""
        from dagster_k8s import PipesK8sClient

        if not self.image:
            raise dg.Failure("launcher mode k8s needs an image (the GPU worker image)")
        command = worker_command(worker, "python", args, nproc_per_node)
        options = self.pod_options()
        spec = worker_pod_spec(worker, command, options, {**self.env, **(env or {})})
        context.log.info(f"launching worker {worker} as a pod in {self.namespace}")
        client = PipesK8sClient(env={**self.env, **(env or {})})
        try:
            return client.run(
                context=context,
                extras=dict(extras or {}),
                image=self.image,
                command=command,
                namespace=self.namespace,
                base_pod_spec=spec,
                pod_wait_timeout=self.pod_wait_timeout,
                delete_pod_on_completion=not self.keep_failed_pods,
            )
        except DagsterPipesExecutionError as exc:
            raise dg.Failure(
                description=f"worker {worker} pod failed: {exc}",
                metadata={"worker": worker, "namespace": self.namespace},
            ) from exc
