"""visual_descriptions: what each taxon's wiki text says about its visible appearance.

(No `from __future__ import annotations` here: Dagster reads these annotations.)

An LLM (vLLM or an OpenAI-compatible server) filters each wiki text in the
``describe`` worker; with no GPU the rule-based filter stands in, and says so in
every row. ``buckets`` splits the texts over several workers (one GPU each in
production), run side by side. The released ``wiki_description.parquet`` can be
loaded instead (``backend: released``).
"""

from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pandas as pd
import pyarrow as pa

from biocap_assets.assets import columns
from biocap_assets.assets.columns import column_metadata
from biocap_assets.assets.common import (
    OWNERS,
    ShrinkGuard,
    check_shrink,
    inference_params,
    to_inference_config,
)
from biocap_assets.common.files import parquet_bytes, read_parquet
from biocap_assets.inference.descriptions import (
    RELEASED_MODEL,
    descriptions_table,
    released_descriptions,
    summary,
    texts_to_describe,
)
from biocap_assets.resources import LauncherResource, SourcesResource, StorageResource
from biocap_assets.resources.duckdb import BiocapDuckDB

DescriptionInference = inference_params(
    "DescriptionInference",
    "The text model that filters the Wikipedia text, and its sampling (greedy by default).",
    temperature=0.0,
    max_tokens=512,
)


class DescriptionsConfig(ShrinkGuard):
    backend: str = "cpu"
    """cpu (rule-based filter) | vllm | openai | released."""
    inference: DescriptionInference = DescriptionInference()
    """vllm / openai: the model, engine and sampling settings."""
    buckets: int = 1
    """Split the texts over this many workers, run side by side."""
    released_url: str = ""
    """backend released: a Parquet with `binomial` and `description` columns."""


MAX_ERROR_SHARE = 0.05


@dg.asset(
    key="visual_descriptions",
    group_name="descriptions",
    ins={
        "wiki_pages": dg.AssetIn(input_manager_key="table_io_manager"),
        "taxa_table": dg.AssetIn(input_manager_key="table_io_manager"),
    },
    io_manager_key="table_io_manager",
    metadata={"table": "visual_descriptions", **column_metadata(columns.VISUAL_DESCRIPTIONS)},
    kinds={"vllm", "duckdb"},
    owners=OWNERS,
    pool="gpu",
    check_specs=[
        dg.AssetCheckSpec(
            "model_errors_below_threshold",
            asset="visual_descriptions",
            description="at most 5% of the texts end without a valid answer from the model",
        )
    ],
    code_version="1",
    description=(
        "Each taxon's wiki text filtered by an LLM to what describes visible appearance "
        "(colour, shape, size, pattern, texture, body parts). Validated JSON answers; "
        "invalid ones are retried once, then recorded as errors. Every row names the "
        "backend and model; with no GPU a rule-based filter stands in."
    ),
)
def visual_descriptions(
    context: dg.AssetExecutionContext,
    config: DescriptionsConfig,
    wiki_pages: pa.Table,
    taxa_table: pa.Table,
    sources: SourcesResource,
    launcher: LauncherResource,
    storage: StorageResource,
    duckdb: BiocapDuckDB,
):
    todo = texts_to_describe(wiki_pages, taxa_table)
    if config.backend == "released":
        try:
            results = released_descriptions(
                read_parquet(config.released_url), todo, config.released_url
            )
        except ValueError as exc:
            raise dg.Failure(str(exc)) from exc
        backend, model, buckets = "released", RELEASED_MODEL, 1
    else:
        inference = to_inference_config(config.backend, config.inference)
        results, reports = _run_describe_workers(
            context, launcher, storage, todo, inference, max(1, config.buckets)
        )
        backend, model, buckets = reports[0]["backend"], reports[0]["model"], len(reports)
    table = descriptions_table(wiki_pages, results, backend, model)
    check_shrink(config, duckdb, "visual_descriptions", table.num_rows, "the wiki pages")
    stats = summary(table)
    errors = stats["status_counts"]["error"]
    yield dg.Output(
        table,
        metadata={
            "source": sources.data_label,
            "backend": backend,
            "model": model,
            "cpu_fallback": backend == "cpu",
            "texts": todo.num_rows,
            "buckets": buckets,
            "status_counts": dg.MetadataValue.json(stats["status_counts"]),
            "preview": dg.MetadataValue.md(
                pd.DataFrame(stats["preview"]).to_markdown(index=False)
                if stats["preview"]
                else "(none)"
            ),
        },
    )
    share = errors / todo.num_rows if todo.num_rows else 0.0
    yield dg.AssetCheckResult(
        check_name="model_errors_below_threshold",
        passed=share <= MAX_ERROR_SHARE,
        metadata={
            "errors": errors,
            "error_share": round(share, 4),
            "threshold": MAX_ERROR_SHARE,
            "examples": dg.MetadataValue.json(stats["error_examples"]),
        },
    )


def _run_describe_workers(context, launcher, storage, todo, inference, buckets):
    """The ``describe`` workers over ``buckets`` slices, side by side; their results and
    reports. The run's temporary files go, whatever happens."""
    run_dir = ["descriptions", context.run.run_id]
    todo_path = storage.write_bytes(*run_dir, "input.parquet", data=parquet_bytes(todo))

    def launch(bucket: int) -> dict:
        output = storage.path(*run_dir, f"output-{bucket:03d}.parquet")
        invocation = launcher.run(
            context,
            "describe",
            extras={
                "input": str(todo_path),
                "output": str(output),
                "bucket": bucket,
                "buckets": buckets,
                "inference": inference.as_dict(),
            },
        )
        return {**invocation.get_custom_messages()[-1], "output": str(output)}

    try:
        with ThreadPoolExecutor(max_workers=buckets) as pool:
            reports = list(pool.map(launch, range(buckets)))
        results = pa.concat_tables([read_parquet(report["output"]) for report in reports])
    finally:
        folder = storage.path(*run_dir)
        for path in folder.iterdir() if folder.exists() else []:
            path.unlink()
    return results, reports
