"""clip_checkpoint: BioCAP training with open_clip, launched with torchrun in a worker.

(No `from __future__ import annotations` here: Dagster reads these annotations.)

Trains on every captioned training shard and validates on the captioned validation shards
(partitions ``val-*``, from BIOCAP_VAL_SHARDS_URL), as BioCAP's ``--train-data`` and
``--val-data``; without validation shards, the last ``val_shards`` training shards are held
out instead. The run folder is named after the run, the data version (a
hash of each captioned shard's content digest, as the caption worker recorded it, with
its backend, model and prompt) and the training config's identity (initial weights,
model, optimiser, batch, seed...; not the epoch count), so re-materializing with the same
data and config resumes the run from its latest checkpoint, and new data (re-captioned
with another prompt, temperature or seed included) or another config starts a new run.
Where the initial weights come from (``openai`` for the upstream recipe) is checked before
the worker is launched.
"""

import hashlib
import json
import math

import dagster as dg
import pandas as pd
import pyarrow as pa

from biocap_assets.assets.common import OWNERS
from biocap_assets.plots import markdown_image, svg_lines
from biocap_assets.resources import LauncherResource, SourcesResource, StorageResource
from biocap_assets.shards.naming import VAL_PREFIX
from biocap_assets.training.config import PRESETS, TrainConfig
from biocap_assets.training.pretrained import PretrainedUnavailable, check


class TrainingConfig(dg.Config):
    preset: str = "auto"
    """auto: `demo` (tiny model, minutes on a CPU) on the demo shards, else `upstream`."""
    run_name: str = "biocap"
    nproc_per_node: int = 1
    """Processes (devices) per node; torchrun runs the worker."""
    nnodes: int = 1
    """Nodes; above 1 the k8s launcher runs an Indexed Job of torchrun pods."""
    val_shards: int = 1
    """Without validation shards (BIOCAP_VAL_SHARDS_URL, partitions val-*): hold out the
    last N captioned training shards for validation instead."""
    overrides: dict = {}
    """TrainConfig fields over the preset, e.g. {"epochs": 2, "lr": 5e-4}."""


# What identifies a captioned shard's content; the digest is the output tar's sha256.
VERSION_KEYS = ("shard", "samples", "captioned", "backend", "model", "prompt_sha256", "sha256")


def data_version(stats: pa.Table) -> str:
    """A short hash of what the training data is: every shard's identity and content."""
    rows = sorted(tuple(r.get(k) for k in VERSION_KEYS) for r in stats.to_pylist())
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:12]


def split_shards(stats: pa.Table, val_shards: int) -> tuple[list[dict], list[dict]]:
    """(training shards, validation shards): the ``val-`` partitions validate, as BioCAP's
    ``--val-data`` does, and every other shard trains; without any, the last ``val_shards``
    training shards are held out."""
    rows = sorted(stats.to_pylist(), key=lambda r: r["shard"])
    val = [r for r in rows if r["shard"].startswith(VAL_PREFIX)]
    if val:
        train = [r for r in rows if not r["shard"].startswith(VAL_PREFIX)]
        if not train:
            raise dg.Failure("only validation shards are captioned: no shard to train on")
        return train, val
    if len(rows) <= val_shards:
        raise dg.Failure(
            f"{len(rows)} captioned shard(s): need more than val_shards="
            f"{val_shards} to keep some for training"
        )
    cut = len(rows) - val_shards
    return rows[:cut], rows[cut:]


def training_chart(history: list[dict]) -> str:
    """Train loss per logged step and validation losses per epoch, as one SVG chart."""
    series = {
        "train loss": [(h["step"], h["loss"]) for h in history if "loss" in h],
        "val taxonomic loss": [
            (h["step"], h["val_tax_loss"]) for h in history if "val_tax_loss" in h
        ],
        "val caption loss": [
            (h["step"], h["val_caption_loss"]) for h in history if "val_caption_loss" in h
        ],
    }
    return svg_lines(series, "step", "contrastive loss")


def _curve(history: list[dict]) -> str:
    evals = [h for h in history if "val_tax_loss" in h]
    if not evals:
        return "(no validation yet)"
    return pd.DataFrame(evals)[["epoch", "step", "val_tax_loss", "val_caption_loss"]].to_markdown(
        index=False
    )


@dg.asset(
    key="clip_checkpoint",
    group_name="training",
    ins={
        "captioned_shards": dg.AssetIn(
            input_manager_key="table_io_manager", partition_mapping=dg.AllPartitionMapping()
        )
    },
    io_manager_key="io_manager",
    kinds={"pytorch", "kubernetes"},
    owners=OWNERS,
    pool="gpu",
    code_version="2",  # open_clip_train's checkpoint layout, an export, OpenAI init
    check_specs=[
        dg.AssetCheckSpec(
            "losses_are_finite",
            asset="clip_checkpoint",
            description="the last train loss and the validation losses are finite numbers",
        )
    ],
    description=(
        "A BioCAP CLIP checkpoint (open_clip; ViT-B-16 by default, `biocap-tiny` on the demo): "
        "the vision tower's second projector `caption_proj` for captions, one text type per "
        "step over sci, com, taxon, sci_com, taxon_com and caption. Trained with torchrun in "
        "the `train` worker; resumes from its last checkpoint."
    ),
)
def clip_checkpoint(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    captioned_shards: pa.Table,
    sources: SourcesResource,
    launcher: LauncherResource,
    storage: StorageResource,
):
    preset = config.preset
    if preset == "auto":
        preset = "upstream" if sources.shards_url else "demo"
    if preset not in PRESETS:
        raise dg.Failure(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    try:
        train_config = TrainConfig.from_dict(
            {**PRESETS[preset].as_dict(), **dict(config.overrides)}
        )
    except (TypeError, ValueError) as exc:
        raise dg.Failure(f"training overrides: {exc}") from exc
    try:
        weights = check(
            train_config.model,
            train_config.pretrained,
            worker_env=launcher.env,
            same_machine=launcher.mode == "local",
        )
    except PretrainedUnavailable as exc:
        raise dg.Failure(f"initial weights unavailable: {exc}") from exc
    context.log.info(f"initial weights of {train_config.model}: {weights.kind} ({weights.detail})")
    train_rows, val_rows = split_shards(captioned_shards, config.val_shards)
    version = data_version(captioned_shards)
    # the data and the training config name the run: either changing starts a new one
    run_dir = storage.path("checkpoints", f"{config.run_name}-{version}-{train_config.identity()}")
    train_samples = sum(r["captioned"] for r in train_rows)
    extras = {
        "preset": preset,
        "config": dict(config.overrides),
        "job": {
            "train_urls": [r["output_url"] for r in train_rows],
            "val_urls": [r["output_url"] for r in val_rows],
            "out_dir": str(run_dir),
            "data_version": version,
            "train_samples": train_samples,
        },
    }
    context.log.info(
        f"training ({preset}) on {len(train_rows)} shards, {train_samples} "
        f"samples; validating on {len(val_rows)}; run folder {run_dir}"
    )
    if config.nnodes > 1:
        invocation = launcher.run_training_job(
            context, extras, nnodes=config.nnodes, gpus_per_node=config.nproc_per_node
        )
    else:
        invocation = launcher.run(
            context, "train", extras=extras, nproc_per_node=config.nproc_per_node
        )
    result = invocation.get_custom_messages()[-1]
    summary_path = run_dir / f"epoch_{result['epochs']}.json"
    summary = json.loads(summary_path.read_text())
    value = {
        **result,
        "data_version": version,
        "summary": str(summary_path),
        "preset": preset,
        "model": summary["config"]["model"],
    }
    losses = {
        k: float(result[k])
        for k in ("train_loss", "val_tax_loss", "val_caption_loss")
        if k in result
    }
    history = summary.get("history", [])
    yield dg.Output(
        value,
        metadata={
            "source": sources.data_label,
            "checkpoint": dg.MetadataValue.path(result["checkpoint"]),
            "run_dir": dg.MetadataValue.path(str(run_dir)),
            "preset": preset,
            "model": value["model"],
            "initial_weights": f"{train_config.pretrained or 'none'} ({weights.kind})",
            "export": dg.MetadataValue.path(result.get("export", "")),
            "data_version": version,
            "train_shards": dg.MetadataValue.json([r["shard"] for r in train_rows]),
            "val_shards": dg.MetadataValue.json([r["shard"] for r in val_rows]),
            **{
                k: result[k]
                for k in (
                    "epochs",
                    "steps",
                    "samples_seen",
                    "samples_per_second",
                    "samples_per_second_per_device",
                    "wall_seconds",
                    "world_size",
                    "resumed_from_epoch",
                )
            },
            # epoch .pt files left (keep_checkpoints, default the newest 2, final included)
            "checkpoints_kept": dg.MetadataValue.json(result.get("checkpoints_kept", [])),
            **losses,
            "training_curve": dg.MetadataValue.md(
                markdown_image(training_chart(history), "training curve")
            ),
            "validation_curve": dg.MetadataValue.md(_curve(history)),
        },
    )
    yield dg.AssetCheckResult(
        check_name="losses_are_finite",
        passed=bool(losses) and all(math.isfinite(v) for v in losses.values()),
        metadata={k: dg.MetadataValue.text(str(v)) for k, v in losses.items()},
    )
