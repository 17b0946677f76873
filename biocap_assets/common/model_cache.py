"""The Hugging Face cache the model-running workers load from, and how it is filled.

On Kubernetes the hub cache is one shared volume (``HF_HUB_CACHE=/models/hub``, see
``resources/k8s.py``): the ``models`` worker fills it once, through huggingface_hub's own
``snapshot_download`` (the cache layout, revisions and partial-download handling are
the library's), and every GPU pod reads it read-only with ``HF_HUB_OFFLINE=1`` (its
``HF_HOME`` on scratch), as vLLM and open_clip resolve weights through the same library.

A model is named as on the hub: ``owner/name``, optionally ``@revision`` (a branch, tag
or commit), and ``dataset:`` before a dataset's name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HubRepo:
    repo_id: str
    revision: str = "main"
    repo_type: str = "model"  # model | dataset

    @classmethod
    def parse(cls, spec: str) -> HubRepo:
        text = spec.strip()
        repo_type = "model"
        if text.startswith("dataset:"):
            repo_type, text = "dataset", text.removeprefix("dataset:")
        repo_id, _, revision = text.partition("@")
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
            raise ValueError(
                f"model {spec!r}: name it as on the Hugging Face hub, owner/name "
                "(optionally @revision, and dataset: before a dataset)"
            )
        return cls(repo_id, revision or "main", repo_type)

    def __str__(self) -> str:
        prefix = "dataset:" if self.repo_type == "dataset" else ""
        return f"{prefix}{self.repo_id}@{self.revision}"


def _size(folder: str) -> tuple[int, int]:
    """(files, bytes) of a snapshot folder (its entries link to the cache's blobs)."""
    files = size = 0
    for root, _, names in os.walk(folder):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(root, name))  # follows the link
    return files, size


def fetch(
    repo: HubRepo, allow_patterns: Sequence[str] | None = None, cache_dir: str | None = None
) -> dict:
    """Put ``repo`` in the cache (only what is missing is downloaded); what is there now.

    ``cache_dir``: default, the cache ``HF_HOME``/``HF_HUB_CACHE`` name, where loaders
    look.
    """
    from huggingface_hub import snapshot_download

    folder = snapshot_download(
        repo.repo_id,
        repo_type=repo.repo_type,
        revision=repo.revision,
        allow_patterns=list(allow_patterns) if allow_patterns else None,
        cache_dir=cache_dir,
    )
    files, size = _size(folder)
    if not files:
        raise FileNotFoundError(
            f"{repo}: nothing was downloaded"
            + (f" (no file matches {list(allow_patterns)})" if allow_patterns else "")
        )
    return {
        "repo": str(repo),
        "commit": os.path.basename(folder),  # snapshots/<commit hash>
        "files": files,
        "bytes": size,
        "path": folder,
    }


class ModelNotCached(RuntimeError):
    """Offline, and the model is not in the cache: the message says how to put it there."""


def require_cached(model: str, revision: str = "") -> None:
    """Offline (``HF_HUB_OFFLINE``, as GPU pods on Kubernetes run), fail now, naming the
    model, unless ``model`` at ``revision`` (default: main) is in the cache the loaders
    read, instead of deep inside an engine's start-up. Anything that is not a hub
    repository name (a local folder or file, a URL) is left to the loader."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    if not constants.HF_HUB_OFFLINE or os.path.exists(model):
        return
    try:
        validate_repo_id(model)
    except HFValidationError:
        return
    if "/" not in model:
        return
    wanted = f"{model}@{revision}" if revision else model
    try:
        snapshot_download(model, revision=revision or None, local_files_only=True)
    except LocalEntryNotFoundError:
        raise ModelNotCached(
            f"model {wanted} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
            "and this worker runs offline (HF_HUB_OFFLINE=1): materialize model_weights "
            f"with {wanted} in its `models` config first"
        ) from None
