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

from biocap_assets.resources.k8s import worker_pod_spec
from biocap_assets.workers.runtime import ERROR_FILE_ENV

WORKER_PACKAGE = "biocap_assets.workers"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def worker_command(worker: str, python: str, args: Sequence[str] = ()) -> list[str]:
    """The command line that starts a worker module."""
    if not worker.isidentifier():
        raise ValueError(f"worker name {worker!r} must be a module name")
    return [python, "-m", f"{WORKER_PACKAGE}.{worker}", *args]


class LauncherResource(dg.ConfigurableResource):
    """Where workers run. ``local``: a subprocess of the step (PipesSubprocessClient)."""

    mode: Literal["local"] = Field(default="local", description="local: subprocess workers")
    python: str = Field(default="", description="interpreter for workers; default: this one")
    env: dict[str, str] = Field(
        default_factory=dict, description="extra environment variables for workers"
    )

    def run(
        self,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        worker: str,
        extras: Mapping[str, object] | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        """Run ``worker`` to completion; raises if it fails, with the worker's error."""
        if self.mode == "k8s":
            return self._run_k8s(context, worker, extras, args, env)
        command = worker_command(worker, self.python or sys.executable, args)
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
        self, context, worker: str, extras, args: Sequence[str], env: Mapping[str, str] | None
    ) -> dg.PipesClientCompletedInvocation:
        """One pod per worker run; needs a cluster (not reachable from the test machines)."""
        from dagster_k8s import PipesK8sClient

        if not self.image:
            raise dg.Failure("launcher mode k8s needs an image (the GPU worker image)")
        command = worker_command(worker, "python", args)
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
