"""Checkpoints under the storage root, in the layouts the ecosystem loads.

- ``checkpoints/<run>/epoch_N.pt``: open_clip_train's layout, ``{'epoch', 'name',
  'state_dict', 'optimizer'}`` (plus ``step``). ``state_dict`` is the open_clip CLIP with
  the caption head under the reference fork's names (``visual.caption_proj``,
  ``logit_scale_caption``, ``logit_bias_caption``), so the fork's loader takes both heads.
  ``epoch_N.json`` beside it (written after the ``.pt``, so it marks a complete
  checkpoint) holds config, step, metrics and the data version. Resuming takes the newest
  epoch whose JSON exists.
- ``checkpoints/<run>/export/``: the final model as BioCLIP and BioCAP ship it on the hub:
  ``open_clip_config.json`` (written by open_clip's own ``save_config_for_hf``) and
  ``open_clip_model.safetensors`` holding the plain CLIP with the taxonomic head, so stock
  open_clip loads it with ``create_model_and_transforms('local-dir:<folder>')``. The caption
  head goes to ``caption_head.safetensors``, named in the config under ``biocap``.

Checkpoints of the earlier layout (``{'model': {'clip.*', 'caption_proj', ...}}``) are
converted on load, optimizer state included.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from pathlib import Path

import torch
from upath import UPath

from biocap_assets.common.files import atomic_open
from biocap_assets.training.model import CAPTION_HEAD_KEYS

_EPOCH = re.compile(r"^epoch_(\d+)\.json$")
EXPORT_DIR = "export"
CONFIG_NAME = "open_clip_config.json"  # open_clip.constants.HF_CONFIG_NAME
WEIGHTS_NAME = "open_clip_model.safetensors"  # open_clip.constants.HF_SAFE_WEIGHTS_NAME
CAPTION_HEAD_NAME = "caption_head.safetensors"

# The earlier layout's names for the caption head.
_LEGACY_NAMES = {
    "caption_proj": "visual.caption_proj",
    "caption_logit_scale": "logit_scale_caption",
    "caption_logit_bias": "logit_bias_caption",
}


class CheckpointError(ValueError):
    """A checkpoint cannot be read; the message names the file and what is wrong."""


def save(folder: UPath, epoch: int, state: dict, summary: dict) -> UPath:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    target = folder / f"epoch_{epoch}.pt"
    with atomic_open(str(target)) as f:
        f.write(buffer.getvalue())
    with atomic_open(str(folder / f"epoch_{epoch}.json"), "w") as f:
        json.dump({**summary, "epoch": epoch, "checkpoint": str(target)}, f, indent=1, default=str)
    return target


def complete_epochs(folder: UPath) -> list[int]:
    """Epochs with both their summary and their weights, oldest first."""
    return sorted(
        int(m.group(1))
        for p in folder.iterdir()
        if (m := _EPOCH.match(p.name)) and (folder / f"epoch_{m.group(1)}.pt").exists()
    )


def prune(folder: UPath, keep: int) -> list[int]:
    """Delete the ``.pt`` of all but the newest ``keep`` complete epochs (0: keep all); the
    small ``epoch_N.json`` summaries stay. Returns the epochs whose weights remain."""
    epochs = complete_epochs(folder)
    if keep <= 0:
        return epochs
    for epoch in epochs[:-keep]:
        (folder / f"epoch_{epoch}.pt").unlink()
    return epochs[-keep:]


def latest(folder: UPath) -> tuple[int, UPath, dict] | None:
    """(epoch, .pt path, summary) of the newest complete checkpoint, or None."""
    if not folder.exists():
        return None
    epochs = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH.match(p.name)))
    for epoch, summary_path in reversed(epochs):
        pt = folder / f"epoch_{epoch}.pt"
        if pt.exists():
            return epoch, pt, json.loads(summary_path.read_text())
    return None


def load_state(path: UPath, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint in open_clip_train's layout; the earlier layout is converted."""
    with path.open("rb") as f:
        try:
            state = torch.load(io.BytesIO(f.read()), map_location=map_location, weights_only=False)
        except Exception as exc:  # torch raises many types for a file that is not a checkpoint
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: a checkpoint is a dict, got {type(state).__name__}")
    if "state_dict" in state:
        return state
    if "model" in state:
        return convert_legacy(state)
    raise CheckpointError(
        f"{path}: neither open_clip_train's layout ('state_dict') nor biocap's earlier one "
        f"('model'); keys: {sorted(state)[:8]}"
    )


def convert_legacy(state: dict) -> dict:
    """``{'model': {'clip.*', 'caption_proj', ...}, 'optimizer', 'step', 'model_name'}`` into
    open_clip_train's layout. The optimizer's parameter indices follow the new order."""
    old = state["model"]
    new: dict[str, torch.Tensor] = {}
    for key, value in old.items():
        if key.startswith("clip."):
            new[key[len("clip.") :]] = value
        elif key in _LEGACY_NAMES:
            new[_LEGACY_NAMES[key]] = value
        else:
            raise CheckpointError(f"earlier-layout checkpoint has an unknown key {key!r}")
    converted = {
        "epoch": state.get("epoch"),
        "name": state.get("model_name", ""),
        "state_dict": new,
        "step": state.get("step", 0),
        "legacy_layout": True,
    }
    if "optimizer" in state:
        converted["optimizer"] = state["optimizer"]
        # The earlier wrapper listed clip.* first and the caption head last; name each
        # index so the loop can reorder the state for the current parameter order.
        converted["optimizer_param_names"] = [
            (k[len("clip.") :] if k.startswith("clip.") else _LEGACY_NAMES[k]) for k in old
        ]
    return converted


def reorder_optimizer_state(
    optimizer_state: dict, saved_groups: list[list[str]], groups: list[list[str]]
) -> dict:
    """An optimizer state saved with its parameters grouped and ordered as ``saved_groups``
    (names), remapped to the current ``groups``: the same names, maybe in another order."""
    if [sorted(g) for g in saved_groups] != [sorted(g) for g in groups]:
        raise CheckpointError("the checkpoint's optimizer state is for other parameters")
    index_of: dict[str, int] = {}
    for group, names in zip(optimizer_state["param_groups"], saved_groups, strict=True):
        if len(group["params"]) != len(names):
            raise CheckpointError("the checkpoint's optimizer groups do not match its model")
        index_of.update(zip(names, group["params"], strict=True))
    state, new_state, new_groups, counter = optimizer_state["state"], {}, [], 0
    for group, names in zip(optimizer_state["param_groups"], groups, strict=True):
        params = []
        for name in names:
            if index_of[name] in state:
                new_state[counter] = state[index_of[name]]
            params.append(counter)
            counter += 1
        new_groups.append({**group, "params": params})
    return {"state": new_state, "param_groups": new_groups}


# -- export ------------------------------------------------------------------------------


def export_for_hub(clip: torch.nn.Module, model_config: dict, folder: UPath) -> UPath:
    """Write ``folder/export``: open_clip_config.json, the plain CLIP and the caption head."""
    import open_clip
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save as save_safetensors

    state = {k: v.detach().cpu().contiguous() for k, v in clip.state_dict().items()}
    head = {k: state.pop(k) for k in CAPTION_HEAD_KEYS if k in state}
    target = folder / EXPORT_DIR
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / CONFIG_NAME
        save_config_for_hf(clip, config_path, model_config=model_config)
        config = json.loads(config_path.read_text())
    config["biocap"] = {
        "caption_head": CAPTION_HEAD_NAME,
        "caption_head_keys": sorted(head),
        "note": (
            "open_clip_model.safetensors is a plain open_clip CLIP whose visual.proj is the "
            "taxonomic head; caption_head.safetensors holds the caption projector under the "
            "reference fork's names (load it with biocap's load_export or the fork)."
        ),
        "open_clip_version": open_clip.__version__,
    }
    files = {
        WEIGHTS_NAME: save_safetensors(state),
        CAPTION_HEAD_NAME: save_safetensors(head),
        CONFIG_NAME: json.dumps(config, indent=2).encode(),
    }
    target.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_NAME, CAPTION_HEAD_NAME, CONFIG_NAME):  # the config last: complete
        with atomic_open(str(target / name)) as f:
            f.write(files[name])
    return target


def load_export(folder: str | Path, device: str = "cpu"):
    """(DualProjectionCLIP, eval transform, tokenizer) from an export folder: the plain CLIP
    through stock open_clip (``local-dir:``), then the caption head from its side file."""
    import open_clip
    from safetensors.torch import load_file

    from biocap_assets.training.model import DualProjectionCLIP

    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME}; not an exported model folder")
    clip, _, preprocess = open_clip.create_model_and_transforms(
        f"local-dir:{folder}", device=device
    )
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model = DualProjectionCLIP(clip)
    head_name = json.loads(config_path.read_text()).get("biocap", {}).get("caption_head")
    if head_name:
        head = load_file(str(folder / head_name), device=str(device))
        missing = [k for k in CAPTION_HEAD_KEYS[:2] if k not in head]
        if missing:
            raise CheckpointError(f"{folder / head_name}: missing {', '.join(missing)}")
        result = clip.load_state_dict(head, strict=False)
        if result.unexpected_keys:
            raise CheckpointError(f"{folder / head_name}: unexpected {result.unexpected_keys}")
    model.eval()
    return model.to(device), preprocess, tokenizer
