"""model_weights: the model weights in the Hugging Face cache the model-running workers
read (on Kubernetes, the shared volume ``BIOCAP_K8S_MODEL_CACHE`` at ``/models``).

Materialize it once per cluster, and again when a config names another model: its worker
is the only pod that writes the cache and may reach the hub; every GPU pod reads the
cache offline. It is no upstream of the other assets: the demo's CPU models need no
weights, and a laptop without the hub must still run the demo.

(No `from __future__ import annotations` here: Dagster reads these annotations.)
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from biocap_assets.assets.captions import CaptionInference
from biocap_assets.assets.common import OWNERS
from biocap_assets.resources import LauncherResource
from biocap_assets.training.config import TrainConfig


class ModelWeightsConfig(dg.Config):
    models: list[str] = Field(
        default_factory=lambda: [CaptionInference().model],
        description="Hugging Face repositories to cache: owner/name, owner/name@revision, "
        "dataset:owner/name; default: the caption model of captioned_shards. Add the "
        "description model when visual_descriptions runs one (vllm).",
    )
    allow_patterns: list[str] = Field(
        default_factory=list, description="files to take from each repository; empty: all"
    )
    clip_model: str = Field(default=TrainConfig.model, description="open_clip model trained")
    clip_pretrained: str = Field(
        default=TrainConfig.pretrained or "",
        description="the open_clip weights training starts from (as clip_checkpoint's "
        "preset); open_clip resolves them to their hub repository; empty: none",
    )


@dg.asset(
    key="model_weights",
    group_name="models",
    kinds={"huggingface"},
    owners=OWNERS,
    code_version="1",
    description=(
        "The caption model's and the CLIP initialisation's weights in the shared Hugging "
        "Face cache (one download per cluster; the GPU pods read it offline)."
    ),
)
def model_weights(
    context: dg.AssetExecutionContext, config: ModelWeightsConfig, launcher: LauncherResource
) -> dg.MaterializeResult:
    result = launcher.run(
        context,
        "models",
        extras={
            "models": list(config.models),
            "allow_patterns": list(config.allow_patterns),
            "clip": {"model": config.clip_model, "pretrained": config.clip_pretrained},
        },
    ).get_custom_messages()[-1]
    rows = result["models"]
    table = pd.DataFrame(rows, columns=["repo", "commit", "files", "bytes"])
    return dg.MaterializeResult(
        metadata={
            "cache": launcher.model_cache_label(),
            "repositories": len(rows),
            "bytes": int(table["bytes"].sum()),
            "models": dg.MetadataValue.md(table.to_markdown(index=False)),
        }
    )
