"""captioned_shards: every input tar rewritten with a caption per sample (one partition each).

(No `from __future__ import annotations` here: Dagster reads these annotations.)

One partition = one run of the ``caption`` worker = one input tar, so a failed
shard is retried alone and a backfill spreads over the ``gpu`` pool. Per-shard
statistics go to the DuckDB table ``shard_stats`` (rows replaced per partition).
"""

import dagster as dg
import pandas as pd
import pyarrow as pa

from biocap_assets.assets import columns
from biocap_assets.assets.columns import column_metadata
from biocap_assets.assets.common import OWNERS, inference_params, to_inference_config
from biocap_assets.inference.base import CAPTION_ENGINE
from biocap_assets.resources import LauncherResource, SourcesResource, StorageResource
from biocap_assets.resources.io_managers import PARTITION_COLUMN
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
    **CAPTION_ENGINE,
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
    check_images: str = "decode"
    """How each image is checked before it is captioned: decode (Pillow decodes it; any
    damage is a bad image), structure (JPEG and PNG checked by their markers and chunks,
    not decoded: several times faster, misses damage inside the coded data), none."""
    image_workers: int = 0
    """Processes that decode images; 0: one per usable CPU (at most 8) for shards of
    256 MB or more, else 1."""


def build_captioned_shards(settings: Settings) -> dg.AssetsDefinition:
    partitions = dg.StaticPartitionsDefinition(shard_partition_keys(settings))

    @dg.asset(
        key="captioned_shards",
        group_name="captions",
        partitions_def=partitions,
        deps=["visual_descriptions"],
        io_manager_key="table_io_manager",
        metadata={"table": "shard_stats", **column_metadata(columns.SHARD_STATS)},
        kinds={"vllm", "webdataset", "duckdb"},
        owners=OWNERS,
        pool="gpu",
        retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
        backfill_policy=dg.BackfillPolicy.multi_run(
            max_partitions_per_run=settings.partitions_per_run
        ),
        check_specs=[
            dg.AssetCheckSpec(
                CAPTIONED_SHARE_CHECK,
                asset="captioned_shards",
                description="share of samples that got a caption",
                partitions_def=partitions,  # one result per shard, shown with its partition
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
        keys = list(context.partition_keys)  # one, unless BIOCAP_PARTITIONS_PER_RUN > 1
        urls, label = sources.shards(context, launcher)
        unknown = [k for k in keys if k not in urls]
        if unknown:
            raise dg.Failure(
                f"partition {unknown[0]}: no such input shard (have {sorted(urls)[:5]}...)"
            )
        descriptions = storage.path("tables", "visual_descriptions.parquet")
        format_examples = config.format_examples_url
        if not format_examples and not sources.shards_url:
            world = sources.demo_world(context, launcher, "BIOCAP_SHARDS_URL")
            format_examples = str(world.format_examples)
        if not descriptions.exists() and config.source != "released":
            context.log.warning("no visual_descriptions snapshot: captions get no reference")
        rows, reports = [], []
        for key in keys:
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
                "check_images": config.check_images,
                "image_workers": config.image_workers,
            }
            if config.source in ("vllm", "openai"):
                inference = to_inference_config(config.source, config.inference)
                extras["inference"] = inference.as_dict()
            report = launcher.run(context, "caption", extras=extras).get_custom_messages()[-1]
            row = {k: report[k] for k in STAT_KEYS}
            rows.append(row | {"shard": key, "input_url": urls[key], "output_url": str(output)})
            reports.append(report)

        table = pa.Table.from_pylist(rows)
        if len(keys) > 1:  # the IO manager writes each partition's row under its key
            table = table.append_column(PARTITION_COLUMN, pa.array(keys, pa.string()))
        yield dg.Output(table, metadata=shard_metadata(rows, reports, label))
        samples = sum(r["samples"] for r in rows)
        share = sum(r["captioned"] for r in rows) / samples if samples else 0.0
        yield dg.AssetCheckResult(
            check_name=CAPTIONED_SHARE_CHECK,
            passed=share >= config.min_captioned_share,
            metadata={
                "partition": keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}",
                "captioned_share": round(share, 4),
                "threshold": config.min_captioned_share,
                **(
                    {}
                    if len(keys) == 1
                    else {
                        "shares": dg.MetadataValue.json(
                            {
                                r["shard"]: round(r["captioned"] / r["samples"], 4)
                                if r["samples"]
                                else 0.0
                                for r in rows
                            }
                        )
                    }
                ),
            },
        )

    return captioned_shards


def shard_metadata(rows: list[dict], reports: list[dict], label: str) -> dict:
    """One partition's statistics as they are; several (a multi-partition run): the sums,
    and each shard's row in a table."""
    row, report = rows[0], reports[0]
    if len(rows) > 1:
        total = {k: sum(r[k] for r in rows) for k in ("samples", "captioned", "seconds")}
        return {
            "source": label,
            "shards": len(rows),
            **total,
            "samples_per_second": round(total["samples"] / total["seconds"], 2)
            if total["seconds"]
            else 0.0,
            "per_shard": dg.MetadataValue.md(
                pd.DataFrame(rows)[["shard", "samples", "captioned", "seconds"]].to_markdown(
                    index=False
                )
            ),
        }
    examples = pd.DataFrame(report["examples"], columns=["key", "caption"])
    return {
        "source": label,
        "path": dg.MetadataValue.path(row["output_url"]),
        **{k: row[k] for k in STAT_KEYS},
        "cpu_fallback": row["backend"] == "cpu",
        "format_examples": dg.MetadataValue.json(
            {"class_specific": row["examples_class"], "fallback": row["examples_fallback"]}
        ),
        "samples_per_second": round(row["samples"] / row["seconds"], 2) if row["seconds"] else 0.0,
        "sample_captions": dg.MetadataValue.md(examples.to_markdown(index=False)),
        "errors": dg.MetadataValue.json(report["errors"]),
    }
