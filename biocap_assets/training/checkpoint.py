"""Checkpoints under the storage root: ``checkpoints/<run>/epoch_N.pt`` and ``epoch_N.json``.

The ``.pt`` holds model, optimizer and step; the JSON beside it (written after
the ``.pt``, so it marks a complete checkpoint) holds config, step, metrics and
the data version. Resuming takes the newest epoch whose JSON exists.
"""

from __future__ import annotations

import io
import json
import re

import torch
from upath import UPath

from biocap_assets.shards.io import atomic_open

_EPOCH = re.compile(r"^epoch_(\d+)\.json$")


def save(folder: UPath, epoch: int, state: dict, summary: dict) -> UPath:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    target = folder / f"epoch_{epoch}.pt"
    with atomic_open(str(target)) as f:
        f.write(buffer.getvalue())
    with atomic_open(str(folder / f"epoch_{epoch}.json"), "w") as f:
        json.dump({**summary, "epoch": epoch, "checkpoint": str(target)}, f, indent=1, default=str)
    return target


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
    with path.open("rb") as f:
        return torch.load(io.BytesIO(f.read()), map_location=map_location, weights_only=False)
