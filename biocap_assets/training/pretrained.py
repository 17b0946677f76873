"""Where the initial weights of a training run come from, checked before any GPU is asked for.

``pretrained`` is what open_clip's factory takes: an open_clip tag (``openai`` for the
upstream recipe), whose weights open_clip downloads from the Hugging Face hub into its
cache, or a local checkpoint file (a path or ``file://`` URL). The training step calls
:func:`check` first: a run that would only find out on its GPU pod, minutes later, that
it cannot get its weights fails at once with what to do instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

# What open_clip's download_pretrained_from_hf looks for, in its order of preference.
_HUB_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
)


class PretrainedUnavailable(RuntimeError):
    """The initial weights cannot be had; the message says how to provide them."""


@dataclass(frozen=True)
class Pretrained:
    kind: str  # none | file | cached | hub | unchecked
    detail: str


def hub_cache(env: Mapping[str, str] | None = None) -> str:
    """The Hugging Face hub cache as ``env`` (default: this process's environment) names
    it now (huggingface_hub reads it once, at import)."""
    env = os.environ if env is None else env
    home = env.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface")
    return env.get("HF_HUB_CACHE") or os.path.join(home, "hub")


def _offline(env: Mapping[str, str]) -> bool:
    return env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_repo(model: str, pretrained: str | None) -> tuple[str, tuple[str, ...]] | None:
    """The Hugging Face repository open_clip fetches ``model``'s ``pretrained`` weights from,
    and the files it looks for there; None when they do not come from the hub (a file,
    a URL, random initialisation, an unknown tag)."""
    import open_clip

    if not pretrained:
        return None
    cfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
    # open_clip's convention (pretrained.download_pretrained): 'org/name/' is a repository
    # read with its default file names, 'org/name/file.bin' names the file
    repo, filename = os.path.split(cfg.get("hf_hub") or "")
    if not repo:
        return None
    if not filename:
        return repo, _HUB_FILES
    stem, suffix = os.path.splitext(filename)
    safe = (f"{stem}.safetensors",) if suffix in (".bin", ".pth") else ()
    return repo, (*safe, filename)  # open_clip tries the safetensors twin first


def _how_to(model: str, tag: str, repo: str) -> str:
    return (
        f"Provide them in one of two ways: download them where the training workers' "
        f"Hugging Face cache is (HF_HOME), e.g. `huggingface-cli download {repo}`, or "
        f"save them as a file and pass its path, e.g. training config "
        f"`overrides: {{pretrained: /models/{model}-{tag}.bin}}` (any checkpoint "
        f"open_clip.create_model('{model}', pretrained=<path>) loads)."
    )


def check(
    model: str,
    pretrained: str | None,
    timeout: float = 10.0,
    worker_env: Mapping[str, str] | None = None,
    same_machine: bool = True,
) -> Pretrained:
    """Raise :class:`PretrainedUnavailable` unless the run can get its initial weights.

    ``worker_env``: the variables the training workers get on top of this process's
    (their ``HF_HOME``, ``HF_HUB_OFFLINE``...). ``same_machine=False`` (workers in pods):
    a local file or a cache on the workers' volume cannot be seen from here, so those are
    left to the worker, which checks again before it loads anything.
    """
    import open_clip

    env = {**os.environ, **(worker_env or {})}
    if not pretrained:
        return Pretrained("none", "random initialisation")
    parsed = urlparse(pretrained)
    if parsed.scheme == "file" or os.sep in pretrained or Path(pretrained).suffix:
        path = Path(parsed.path if parsed.scheme == "file" else pretrained)
        if not same_machine:
            return Pretrained("unchecked", f"{path} (on the workers' filesystem)")
        if not path.is_file():
            raise PretrainedUnavailable(
                f"pretrained weights {pretrained!r}: no such file (on the machine that runs "
                "the training workers)"
            )
        return Pretrained("file", str(path))
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise PretrainedUnavailable(
            f"open_clip has no pretrained tag {pretrained!r} for {model!r}"
            + (f"; it has {', '.join(tags)}" if tags else "; it has none for this model")
            + ". Use a local checkpoint file instead (overrides: {pretrained: /path/to/file})."
        )
    repo, files = hub_repo(model, pretrained) or ("", ())
    if repo:
        from huggingface_hub import try_to_load_from_cache

        cache = hub_cache(env)
        for filename in files:
            cached = try_to_load_from_cache(repo, filename, cache_dir=cache)
            if isinstance(cached, str):
                return Pretrained("cached", cached)
        if _offline(env):
            if not same_machine:
                return Pretrained("unchecked", f"{repo} (in the workers' cache {cache})")
            raise PretrainedUnavailable(
                f"the {model} weights of tag {pretrained!r} ({repo}) are not in the Hugging "
                f"Face cache ({cache}) and HF_HUB_OFFLINE is set, so open_clip cannot "
                "download them. " + _how_to(model, pretrained, repo)
            )
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        errors = []
        for filename in files:
            try:
                get_hf_file_metadata(hf_hub_url(repo, filename), timeout=timeout)
                return Pretrained("hub", f"{repo}/{filename}")
            except Exception as exc:  # any failure means: not from here, now
                errors.append(f"{filename}: {type(exc).__name__}")
        raise PretrainedUnavailable(
            f"the {model} weights of tag {pretrained!r} are not in the Hugging Face cache "
            f"({cache}) and the hub does not answer for {repo} ({'; '.join(errors)}). "
            + _how_to(model, pretrained, repo)
        )
    url = cfg.get("url", "")
    cached = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
    if cached.is_file():
        return Pretrained("cached", str(cached))
    if _offline(env):
        raise PretrainedUnavailable(
            f"the {model} weights of tag {pretrained!r} ({url}) are not cached and "
            "HF_HUB_OFFLINE is set. " + _how_to(model, pretrained, url)
        )
    return Pretrained("hub", url)
