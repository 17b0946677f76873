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
import pyarrow.compute as pc

from biocap_assets.assets.taxa import OWNERS
from biocap_assets.common.files import parquet_bytes, read_parquet
from biocap_assets.inference.factory import InferenceConfig
from biocap_assets.resources import LauncherResource, SourcesResource, StorageResource

RANK_COLUMNS = ["kingdom", "phylum", "class", "order", "family", "genus", "species"]
OUTPUT_SCHEMA = pa.schema(
    [
        ("taxon_id", pa.string()),
        ("binomial", pa.string()),
        *[(r, pa.string()) for r in RANK_COLUMNS],
        ("description", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("backend", pa.string()),
        ("model", pa.string()),
        ("source_chars", pa.int64()),
    ]
)


class DescriptionsConfig(dg.Config):
    backend: str = "cpu"
    """cpu (rule-based filter) | vllm | openai | released."""
    model: str = ""
    base_url: str = ""
    """openai backend: the endpoint, e.g. http://vllm:8000/v1."""
    tensor_parallel_size: int = 1
    buckets: int = 1
    """Split the texts over this many workers, run side by side."""
    released_url: str = ""
    """backend released: a Parquet with `binomial` and `description` columns."""
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0


def released_descriptions(url: str, wiki: pa.Table) -> pa.Table:
    released = read_parquet(url)
    missing = {"binomial", "description"} - set(released.column_names)
    if missing:
        raise dg.Failure(f"released descriptions {url}: missing column(s) {sorted(missing)}")
    by_binomial = dict(
        zip(released["binomial"].to_pylist(), released["description"].to_pylist(), strict=True)
    )
    rows = []
    for row in wiki.to_pylist():
        text = by_binomial.get(row["binomial"]) or ""
        rows.append(
            {
                "taxon_id": row["taxon_id"],
                "description": text,
                "status": "ok" if text else "empty",
                "reason": "" if text else "no released description",
                "backend": "released",
                "model": "TreeOfLife-10M-Captions",
            }
        )
    return pa.Table.from_pylist(rows)


MAX_ERROR_SHARE = 0.05


@dg.asset(
    key="visual_descriptions",
    group_name="descriptions",
    ins={
        "wiki_pages": dg.AssetIn(input_manager_key="table_io_manager"),
        "taxa_table": dg.AssetIn(input_manager_key="table_io_manager"),
    },
    io_manager_key="table_io_manager",
    metadata={"table": "visual_descriptions"},
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
):
    common = dict(
        zip(taxa_table["taxon_id"].to_pylist(), taxa_table["common_name"].to_pylist(), strict=True)
    )
    has_text = pc.fill_null(pc.greater(pc.utf8_length(wiki_pages["text"]), 0), False)
    with_text = wiki_pages.filter(has_text)
    todo = with_text.select(["taxon_id", "binomial", "text"]).append_column(
        "common_name",
        pa.array([common.get(t) for t in with_text["taxon_id"].to_pylist()], pa.string()),
    )

    if config.backend == "released":
        results = released_descriptions(config.released_url, todo)
        reports = [{"backend": "released", "model": "TreeOfLife-10M-Captions"}]
    else:
        inference = InferenceConfig(
            backend=config.backend,
            model=config.model,
            base_url=config.base_url,
            tensor_parallel_size=config.tensor_parallel_size,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            seed=config.seed,
        )
        run_dir = ["descriptions", context.run_id]
        todo_path = storage.write_bytes(*run_dir, "input.parquet", data=parquet_bytes(todo))
        buckets = max(1, config.buckets)

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

        with ThreadPoolExecutor(max_workers=buckets) as pool:
            reports = list(pool.map(launch, range(buckets)))
        results = pa.concat_tables([read_parquet(report["output"]) for report in reports])
        for path in storage.path(*run_dir).iterdir():
            path.unlink()

    by_id = {r["taxon_id"]: r for r in results.to_pylist()}
    rows = []
    for row in wiki_pages.to_pylist():
        result = by_id.get(row["taxon_id"])
        rows.append(
            {
                "taxon_id": row["taxon_id"],
                "binomial": row["binomial"],
                **{r: row[r] for r in RANK_COLUMNS},
                "description": result["description"] if result else "",
                "status": result["status"] if result else "no_text",
                "reason": result["reason"] if result else f"wiki status {row['status']}",
                "backend": result["backend"] if result else reports[0]["backend"],
                "model": result["model"] if result else reports[0]["model"],
                "source_chars": len(row["text"] or ""),
            }
        )
    table = pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)
    statuses = table["status"].to_pylist()
    preview = [
        {"binomial": r["binomial"], "description": r["description"][:160]}
        for r in rows
        if r["status"] == "ok"
    ][:10]
    errors = statuses.count("error")
    yield dg.Output(
        table,
        metadata={
            "source": sources.data_label,
            "backend": reports[0]["backend"],
            "model": reports[0]["model"],
            "cpu_fallback": reports[0]["backend"] == "cpu",
            "texts": todo.num_rows,
            "buckets": len(reports),
            "status_counts": dg.MetadataValue.json(
                {s: statuses.count(s) for s in ("ok", "empty", "error", "no_text")}
            ),
            "preview": dg.MetadataValue.md(
                pd.DataFrame(preview).to_markdown(index=False) if preview else "(none)"
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
            "examples": dg.MetadataValue.json(
                [r["reason"] for r in rows if r["status"] == "error"][:5]
            ),
        },
    )
