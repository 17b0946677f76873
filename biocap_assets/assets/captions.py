"""captioned_shards: every input tar rewritten with a caption per sample (one partition each).

(No `from __future__ import annotations` here: Dagster reads these annotations.)

One partition = one run of the ``caption`` worker = one input tar, so a failed
shard is retried alone and a backfill spreads over the ``gpu`` pool. Per-shard
statistics go to the DuckDB table ``shard_stats`` (rows replaced per partition).
"""

import dagster as dg
import pandas as pd
import pyarrow as pa

from biocap_assets.assets.common import OWNERS, inference_params, to_inference_config
from biocap_assets.resources import LauncherResource, SourcesResource, StorageResource
from biocap_assets.resources.sources import shard_partition_keys
from biocap_assets.settings import Settings
from biocap_assets.shards.rewrite import ShardStats

CAPTIONED_SHARE_CHECK = "captioned_share_above_threshold"
# shard_stats columns reported by the caption worker (ShardStats.as_row), also metadata
STAT_KEYS = tuple(ShardStats().as_row())


def captioned_path(storage: StorageResource, key: str):
    return storage.path("shards", "captioned", f"shard-{key}.tar")


CaptionInference = inference_params(
    "CaptionInference",
    "The caption model and its sampling; defaults as BioCAP's caption_gen runs them.",
    model="OpenGVLab/InternVL3-38B-AWQ",
    quantization="awq",
    max_model_len=2048,
)


class CaptionConfig(dg.Config):
    source: str = "cpu"
    """cpu (template captioner) | vllm | openai | released (TreeOfLife-10M-Captions)."""
    prompt: str = "biocap-reference"
    """biocap-reference: BioCAP's caption prompt (caption_gen), as InternVL's raw prompt;
    biocap-compact: our shorter chat prompt."""
    inference: CaptionInference = CaptionInference()
    """vllm / openai: the model, engine and sampling settings."""
    max_wiki_chars: int = 600
    """The visual description is cut to this many characters in the prompt (caption_gen)."""
    batch_size: int = 256
    """Samples per generation call; memory grows with it, not with the shard."""
    format_examples_url: str = ""
    """format_examples.parquet as upstream ships it (or the earlier CSV), class and
    description columns; default: the demo's when the shards are the demo's."""
    released_url: str = ""
    """source released: uuid_caption_description.parquet (uuid, caption, description)."""
    min_captioned_share: float = 0.95


def build_captioned_shards(settings: Settings) -> dg.AssetsDefinition:
    partitions = dg.StaticPartitionsDefinition(shard_partition_keys(settings))

    @dg.asset(
        key="captioned_shards",
        group_name="captions",
        partitions_def=partitions,
        deps=["visual_descriptions"],
        io_manager_key="table_io_manager",
        metadata={"table": "shard_stats"},
        kinds={"vllm", "webdataset", "duckdb"},
        owners=OWNERS,
        pool="gpu",
        retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
        check_specs=[
            dg.AssetCheckSpec(
                CAPTIONED_SHARE_CHECK,
                asset="captioned_shards",
                description="share of samples that got a caption",
            )
        ],
        code_version="2",  # BioCAP's prompt by default, names as caption_gen takes them
        description=(
            "One partition per input webdataset tar: every member copied unchanged plus a "
            "`caption.txt` per sample from a VLM (vLLM / OpenAI-compatible), the CPU template "
            "captioner, or the released TreeOfLife-10M-Captions. Written atomically under "
            "`shards/captioned/`; statistics in DuckDB `shard_stats`."
        ),
    )
    def captioned_shards(
        context: dg.AssetExecutionContext,
        config: CaptionConfig,
        sources: SourcesResource,
        launcher: LauncherResource,
        storage: StorageResource,
    ):
        key = context.partition_key
        urls, label = sources.shards(context, launcher)
        if key not in urls:
            raise dg.Failure(f"partition {key}: no such input shard (have {sorted(urls)[:5]}...)")
        descriptions = storage.path("tables", "visual_descriptions.parquet")
        format_examples = config.format_examples_url
        if not format_examples and not sources.shards_url:
            format_examples = str(sources.demo_world(context, launcher).format_examples)
        output = captioned_path(storage, key)
        extras = {
            "input": urls[key],
            "output": str(output),
            "partition": key,
            "source": config.source,
            "batch_size": config.batch_size,
            "format_examples": format_examples,
            "released_url": config.released_url,
            "prompt": config.prompt,
            "max_wiki_chars": config.max_wiki_chars,
            "descriptions": str(descriptions) if descriptions.exists() else "",
        }
        if config.source in ("vllm", "openai"):
            extras["inference"] = to_inference_config(config.source, config.inference).as_dict()
        if not extras["descriptions"] and config.source != "released":
            context.log.warning("no visual_descriptions snapshot: captions get no reference")
        report = launcher.run(context, "caption", extras=extras).get_custom_messages()[-1]

        row = {k: report[k] for k in STAT_KEYS}
        row |= {"shard": key, "input_url": urls[key], "output_url": str(output)}
        examples = pd.DataFrame(report["examples"], columns=["key", "caption"])
        yield dg.Output(
            pa.Table.from_pylist([row]),
            metadata={
                "source": label,
                "path": dg.MetadataValue.path(str(output)),
                **{k: row[k] for k in STAT_KEYS},
                "cpu_fallback": row["backend"] == "cpu",
                "format_examples": dg.MetadataValue.json(
                    {
                        "class_specific": row["examples_class"],
                        "fallback": row["examples_fallback"],
                    }
                ),
                "samples_per_second": round(row["samples"] / row["seconds"], 2)
                if row["seconds"]
                else 0.0,
                "sample_captions": dg.MetadataValue.md(examples.to_markdown(index=False)),
                "errors": dg.MetadataValue.json(report["errors"]),
            },
        )
        share = row["captioned"] / row["samples"] if row["samples"] else 0.0
        yield dg.AssetCheckResult(
            check_name=CAPTIONED_SHARE_CHECK,
            passed=share >= config.min_captioned_share,
            metadata={
                "partition": key,
                "captioned_share": round(share, 4),
                "threshold": config.min_captioned_share,
            },
        )

    return captioned_shards
