"""Kubernetes pod specs for workers, built by pure functions (tests validate them offline).

A worker pod runs the same ``python -m biocap_assets.workers.<name>`` command as
the local launcher, in the GPU worker image, as a non-root user, with resource
requests and limits (ephemeral storage included), ``nvidia.com/gpu`` for GPU workers, the
node selector and tolerations of the GPU pool, and S3 credentials from a Secret.

Two shared volumes (ReadWriteMany claims, ``deploy/k8s/volumes.yaml``):

- the **model cache** at ``/models``, its hub cache ``/models/hub`` the pods'
  ``HF_HUB_CACHE``: read-only, with ``HF_HUB_OFFLINE=1``, in every pod that loads a model
  (the GPU workers), so no pod downloads weights, and their ``HF_HOME`` on scratch, where
  transformers writes the remote code of ``trust_remote_code`` models (``HF_MODULES_CACHE``)
  and vLLM its caches; read-write and online only in the ``models`` worker, which fills it
  once (the ``model_weights`` asset);
- the **evaluation data** at ``/eval``, in the workers that download and read the
  benchmark images (``download``, ``evaluate``); run pods mount it too (values.yaml), where
  the suite's annotation files are read.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from biocap_assets.settings import EVAL_MOUNT, MODEL_CACHE_MOUNT

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_WORKERS = ("describe", "caption", "train", "evaluate")
MODEL_CACHE_WRITER = "models"  # the worker that fills the model cache (model_weights)
EVAL_WORKERS = ("download", "evaluate")


@dataclass(frozen=True)
class PodOptions:
    image: str
    namespace: str = "biocap"
    service_account: str = "biocap-worker"
    gpus: int = 1
    gpu_workers: tuple[str, ...] = DEFAULT_GPU_WORKERS
    cpu: str = "4"
    memory: str = "32Gi"
    gpu_cpu: str = "16"
    gpu_memory: str = "120Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, str]] = field(
        default_factory=lambda: (
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
        )
    )
    s3_secret: str = "biocap-s3"
    model_cache: str = "biocap-models"  # claim of the shared Hugging Face cache; "": none
    eval_volume: str = "biocap-eval"  # claim of the evaluation data; "": none
    # node-local disk (container layer, /tmp scratch): a shard in and out (a few GB each),
    # vLLM's and torch.compile's caches; no model weights (they are on the model cache).
    # The kubelet evicts a pod past its limit; the scheduler places it on a node with this
    # much free, so a node of 8 GPUs needs 8 x gpu_ephemeral_storage of allocatable disk.
    ephemeral_storage: str = "10Gi"
    gpu_ephemeral_storage: str = "40Gi"
    run_as_user: int = 1000
    shm_size: str = "16Gi"  # PyTorch data loaders and NCCL need more than the 64 MiB default


def uses_gpu(worker: str, options: PodOptions) -> bool:
    return options.gpus > 0 and worker in options.gpu_workers


def uses_model_cache(worker: str, options: PodOptions) -> bool:
    return bool(options.model_cache) and (
        worker in options.gpu_workers or worker == MODEL_CACHE_WRITER
    )


def uses_eval_volume(worker: str, options: PodOptions) -> bool:
    return bool(options.eval_volume) and worker in EVAL_WORKERS


def _ephemeral(worker: str, options: PodOptions) -> str:
    return options.gpu_ephemeral_storage if uses_gpu(worker, options) else options.ephemeral_storage


# where readers of the model cache keep what Hugging Face libraries write (scratch)
READER_HF_HOME = "/tmp/huggingface"


def cache_env(worker: str, options: PodOptions) -> dict[str, str]:
    """The hub cache on the shared volume; for readers offline, with HF_HOME (modules,
    tokens, datasets) on writable scratch, since the volume is read-only to them."""
    if not uses_model_cache(worker, options):
        return {}
    hub = f"{MODEL_CACHE_MOUNT}/hub"
    if worker == MODEL_CACHE_WRITER:
        return {"HF_HOME": MODEL_CACHE_MOUNT, "HF_HUB_CACHE": hub}
    return {"HF_HOME": READER_HF_HOME, "HF_HUB_CACHE": hub, "HF_HUB_OFFLINE": "1"}


def _shared_volumes(worker: str, options: PodOptions) -> list[tuple[dict, dict]]:
    """(volume, mount) for each shared claim this worker uses."""
    shared = []
    if uses_model_cache(worker, options):
        read_only = worker != MODEL_CACHE_WRITER
        shared.append(
            (
                {
                    "name": "models",
                    "persistentVolumeClaim": {
                        "claimName": options.model_cache,
                        "readOnly": read_only,
                    },
                },
                {"name": "models", "mountPath": MODEL_CACHE_MOUNT, "readOnly": read_only},
            )
        )
    if uses_eval_volume(worker, options):
        shared.append(
            (
                {"name": "eval", "persistentVolumeClaim": {"claimName": options.eval_volume}},
                {"name": "eval", "mountPath": EVAL_MOUNT},
            )
        )
    return shared


def worker_container(
    worker: str, command: Sequence[str], options: PodOptions, env: Mapping[str, str] | None = None
) -> dict:
    gpu = uses_gpu(worker, options)
    cpu, memory = (options.gpu_cpu, options.gpu_memory) if gpu else (options.cpu, options.memory)
    disk = _ephemeral(worker, options)
    limits: dict[str, str] = {"memory": memory, "ephemeral-storage": disk}
    requests: dict[str, str] = {"cpu": cpu, "memory": memory, "ephemeral-storage": disk}
    if gpu:
        limits[GPU_RESOURCE] = str(options.gpus)
        requests[GPU_RESOURCE] = str(options.gpus)
    container = {
        "name": f"biocap-{worker.replace('_', '-')}",
        "image": options.image,
        "command": list(command),
        "env": [
            {"name": k, "value": v}
            for k, v in sorted({**cache_env(worker, options), **(env or {})}.items())
        ],
        "resources": {"requests": requests, "limits": limits},
        # the worker writes its error to the termination log; without one, the log's tail
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": options.run_as_user,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "scratch", "mountPath": "/tmp"},
            *(mount for _, mount in _shared_volumes(worker, options)),
        ],
    }
    if options.s3_secret:
        container["envFrom"] = [{"secretRef": {"name": options.s3_secret}}]
    return container


def worker_pod_spec(
    worker: str, command: Sequence[str], options: PodOptions, env: Mapping[str, str] | None = None
) -> dict:
    """The pod spec for one worker run (``pod_manifest`` wraps it, with the Pipes
    bootstrap variables of the run)."""
    spec: dict = {
        "restartPolicy": "Never",
        "serviceAccountName": options.service_account,
        # workers never call the Kubernetes API
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": options.run_as_user,
            "fsGroup": options.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [worker_container(worker, command, options, env)],
        "volumes": [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": options.shm_size}},
            {"name": "scratch", "emptyDir": {"sizeLimit": _ephemeral(worker, options)}},
            *(volume for volume, _ in _shared_volumes(worker, options)),
        ],
    }
    if uses_gpu(worker, options):
        if options.node_selector:
            spec["nodeSelector"] = dict(options.node_selector)
        spec["tolerations"] = [dict(t) for t in options.tolerations]
    return spec


def pod_manifest(
    name: str,
    worker: str,
    command: Sequence[str],
    options: PodOptions,
    env: Mapping[str, str] | None = None,
    run_id: str = "",
) -> dict:
    """The Pod the launcher creates for one worker run: :func:`worker_pod_spec` with
    ``env`` (the Pipes bootstrap variables included), labelled with the worker and run."""
    labels = {"app.kubernetes.io/name": "biocap-worker", "biocap/worker": worker}
    if run_id:
        labels["dagster/run-id"] = run_id
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": options.namespace, "labels": labels},
        "spec": worker_pod_spec(worker, command, options, env),
    }


def training_manifests(
    name: str,
    options: PodOptions,
    nnodes: int,
    gpus_per_node: int,
    worker_args: Sequence[str],
    env: Mapping[str, str] | None = None,
    port: int = 29500,
) -> list[dict]:
    """Multi-node training: a headless Service, a NetworkPolicy and an Indexed Job of
    ``nnodes`` pods.

    The namespace denies all ingress by default (``deploy/k8s/networkpolicy.yaml``); this
    run's policy lets its pods, and only them, reach each other (rendezvous, NCCL), so
    the pods of two training runs cannot connect.

    torchrun's static rendezvous: pod ``<name>-0`` (completion index 0) is the master,
    reachable as ``<name>-0.<name>`` through the headless Service, and each pod's
    completion index is its ``--node_rank``, so global rank ``node_rank * gpus_per_node +
    local_rank``. Rank 0, the one that speaks Dagster Pipes, is therefore always on pod
    index 0, the pod the launcher follows. (c10d's dynamic rendezvous would rank the pods
    by host and process id instead, whatever their index.)
    """
    master = f"{name}-0.{name}.{options.namespace}.svc.cluster.local"
    torchrun = " ".join(
        [
            "exec python -m torch.distributed.run",
            f"--nnodes={nnodes}",
            f"--nproc_per_node={gpus_per_node}",
            '--node_rank="${JOB_COMPLETION_INDEX}"',  # expanded by sh: the pod's index
            f"--master_addr={master}",
            f"--master_port={port}",
            "-m biocap_assets.workers.train",
            shlex.join(worker_args),  # each argument stays one word for sh
        ]
    )
    gpu_options = PodOptions(
        **{**options.__dict__, "gpus": gpus_per_node, "gpu_workers": ("train",)}
    )
    spec = worker_pod_spec("train", ["sh", "-c", torchrun], gpu_options, env)
    spec["subdomain"] = name
    spec["containers"][0]["ports"] = [{"containerPort": port, "name": "rendezvous"}]
    labels = {"app.kubernetes.io/name": "biocap-train", "biocap/run": name}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": options.namespace, "labels": labels},
        "spec": {
            "clusterIP": "None",
            "selector": labels,
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": port, "targetPort": port}],
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": options.namespace, "labels": labels},
        "spec": {
            "podSelector": {"matchLabels": {"biocap/run": name}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"biocap/run": name}}}]}],
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": options.namespace, "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": nnodes,
            "parallelism": nnodes,
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }
    return [service, policy, job]


def owned_by(manifest: dict, owner: Mapping) -> dict:
    """``manifest`` with ``owner`` (an object as the API returned it) as its owner: the
    garbage collector deletes it when the owner goes."""
    metadata = owner["metadata"]
    reference = {
        "apiVersion": owner.get("apiVersion") or "batch/v1",
        "kind": owner.get("kind") or "Job",
        "name": metadata["name"],
        "uid": metadata["uid"],
    }
    return {**manifest, "metadata": {**manifest["metadata"], "ownerReferences": [reference]}}
