"""eval_reports: zero-shot, retrieval and INQUIRE-Rerank for the latest checkpoint.

(No `from __future__ import annotations` here: Dagster reads these annotations.)

The ``evaluate`` worker computes the metrics the way BioCAP's own scripts do (see
``evaluation/runner.py``); this step writes them to DuckDB ``eval_results`` (one row per
checkpoint, head, task, dataset and metric: re-evaluating a dataset replaces its rows)
and the report (Markdown + self-contained HTML, led by the paper's two tables) next to
the checkpoint. A dataset of the suite that cannot be evaluated (no local copy of
INQUIRE-Rerank, say) is logged, listed in the metadata and fails the
``every_dataset_evaluated`` check by name. A weekly schedule re-evaluates the latest
checkpoint; a sensor evaluates every new one.
"""

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb as duckdb_module
import pandas as pd
from upath import UPath

from biocap_assets import __version__
from biocap_assets.assets.common import OWNERS
from biocap_assets.common.files import read_parquet
from biocap_assets.evaluation.datasets import load_suite, read_retrieval, suite_from_data_dir
from biocap_assets.evaluation.download import DEADLINE, MAX_BYTES
from biocap_assets.evaluation.report import (
    checkpoint_label,
    headline,
    provenance,
    write_reports,
)
from biocap_assets.plots import markdown_image, svg_bars
from biocap_assets.resources import LauncherResource, SourcesResource, StorageResource
from biocap_assets.resources.duckdb import BiocapDuckDB, retry_on_conflict
from biocap_assets.resources.io_managers import add_missing_columns

RESULT_COLUMNS = [
    "checkpoint",
    "head",
    "options",  # JSON: the evaluation options that made the row (template, precision)
    "task",
    "dataset",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "chance",
    "n",
    "evaluated_at",
]


class EvalConfig(dg.Config):
    suite_file: str = ""
    """A YAML suite; default: $BIOCAP_EVAL_DATA (the upstream data/eval folder, images under
    $BIOCAP_EVAL_IMAGES), or the demo's suite."""
    head: str = "taxonomic"
    """Image head for retrieval and INQUIRE: taxonomic (as BioCAP's scripts) or caption."""
    retrieval_template: str = "a photo of{caption}"
    """How retrieval captions are encoded; the reference's is literally this (no space)."""
    precision: str = "reference"
    """reference: each script's autocast on the device it runs on; fp32: no autocast."""

    def options(self) -> dict[str, str]:
        """What the evaluate worker gets, and every result row records (``options``)."""
        return {
            "head": self.head,
            "retrieval_template": self.retrieval_template,
            "precision": self.precision,
        }


def resolve_suite(config: EvalConfig, sources: SourcesResource, context, launcher):
    if config.suite_file:
        return load_suite(Path(config.suite_file)), f"suite {config.suite_file}"
    data = sources.eval_data
    if data:
        images = sources.eval_images or str(Path(data) / "images")
        specs = suite_from_data_dir(Path(data), Path(images), sources.inquire_rerank or None)
        return specs, f"upstream layout {data}"
    world = sources.demo_world(context, launcher, "BIOCAP_EVAL_DATA")
    specs = suite_from_data_dir(world.data_dir / "eval", world.eval_images)
    return specs, "demo (synthetic)"


def _write_results(duckdb: BiocapDuckDB, frame: pd.DataFrame) -> pd.DataFrame:
    """Replace this checkpoint's rows for the (head, task, dataset) evaluated now (the
    others stay); return the other checkpoints' rows."""
    checkpoint = frame["checkpoint"].iloc[0]

    def replace() -> None:
        with duckdb.get_connection() as connection:
            connection.register("incoming", frame)
            connection.execute(
                "CREATE TABLE IF NOT EXISTS main.eval_results AS SELECT * FROM incoming LIMIT 0"
            )
            # a table written before heads were recorded gains the column (NULL: taxonomic)
            add_missing_columns(connection, "main.eval_results", "incoming")
            connection.execute("BEGIN TRANSACTION")
            try:
                connection.execute(
                    "DELETE FROM main.eval_results WHERE checkpoint = ? "
                    "AND (coalesce(head, 'taxonomic'), task, dataset) IN "
                    "(SELECT DISTINCT head, task, dataset FROM incoming)",
                    [checkpoint],
                )
                connection.execute("INSERT INTO main.eval_results BY NAME SELECT * FROM incoming")
                connection.execute("COMMIT")
            except Exception:
                # a failed COMMIT has already ended the transaction: keep its error
                with contextlib.suppress(duckdb_module.TransactionException):
                    connection.execute("ROLLBACK")
                raise
            finally:
                connection.unregister("incoming")

    retry_on_conflict(replace)
    with duckdb.get_connection() as connection:
        history = (
            connection.execute(
                "SELECT checkpoint, coalesce(head, 'taxonomic') AS head, task, dataset, metric, "
                "arg_max(value, evaluated_at) AS value, max(evaluated_at) AS evaluated_at "
                "FROM main.eval_results WHERE checkpoint <> ? GROUP BY ALL "
                "ORDER BY evaluated_at, checkpoint, task, dataset, metric",
                [checkpoint],
            )
            .to_arrow_table()
            .to_pandas()
        )  # not .df(): it trips a pandas 4 deprecation
    return history.drop(columns=["evaluated_at"])


@dg.asset(
    key="eval_reports",
    group_name="evaluation",
    ins={"clip_checkpoint": dg.AssetIn()},
    deps=["eval_images"],
    kinds={"pytorch", "duckdb"},
    owners=OWNERS,
    pool="gpu",
    code_version="3",  # 3: each row records its options; run/epoch labels
    # a new checkpoint is evaluated once (see jobs.evaluate_new_checkpoints)
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            "every_dataset_evaluated",
            asset="eval_reports",
            description="each dataset of the suite has results, and none is NaN",
        )
    ],
    description=(
        "Zero-shot classification (top-1/3/5, 81 templates), text-image retrieval "
        "(Recall@1/5/10 both ways) and INQUIRE-Rerank (AP, nDCG, MRR per supercategory) of "
        "the latest checkpoint, computed as BioCAP's own scripts compute them; rows in "
        "DuckDB `eval_results`; a Markdown and HTML report with the paper's two tables "
        "next to the checkpoint. Every number comes with its chance level."
    ),
)
def eval_reports(
    context: dg.AssetExecutionContext,
    config: EvalConfig,
    clip_checkpoint: UPath,
    sources: SourcesResource,
    launcher: LauncherResource,
    storage: StorageResource,
    duckdb: BiocapDuckDB,
) -> dg.MaterializeResult:
    summary = json.loads(clip_checkpoint.read_text())
    checkpoint = summary["checkpoint"]
    model_path = summary.get("export") or checkpoint
    specs, label = resolve_suite(config, sources, context, launcher)
    if not specs:
        raise dg.Failure(f"no evaluation dataset found ({label})")
    not_evaluated = {spec.name: spec.missing for spec in specs if spec.missing}
    for name, why in not_evaluated.items():
        context.log.warning(f"{name} is not evaluated: {why}")
    options = config.options()
    output = storage.path("eval", context.run.run_id, "results.parquet")
    try:
        invocation = launcher.run(
            context,
            "evaluate",
            extras={
                "checkpoint": model_path,
                "output": str(output),
                "specs": [spec.__dict__ for spec in specs],
                "options": options,
            },
        )
        frame = read_parquet(str(output)).to_pandas()
    finally:  # the worker's results are only a hand-over: never left behind
        if output.exists():
            output.unlink()
    for name, why in invocation.get_custom_messages()[-1].get("not_evaluated", {}).items():
        if name not in not_evaluated:
            context.log.warning(f"{name} is not evaluated: {why}")
            not_evaluated[name] = why
    frame["checkpoint"] = checkpoint
    frame["options"] = json.dumps(options, sort_keys=True)
    frame["evaluated_at"] = datetime.now(UTC)
    frame = frame[RESULT_COLUMNS]
    history = _write_results(duckdb, frame)
    code_version = context.assets_def.code_versions_by_key[context.asset_key]
    report = {
        "checkpoint": checkpoint,
        "rows": frame,
        "history": history,
        "not_evaluated": not_evaluated,
        "label": checkpoint_label(checkpoint),
        "real_benchmarks": not label.startswith("demo"),
        "provenance": provenance(
            summary,
            label,
            options,
            f"biocap {__version__}, eval_reports code version {code_version}",
            context.run.run_id,
            datetime.now(UTC),
        ),
    }
    reports = write_reports(summary["run_dir"], f"report-epoch_{summary['epochs']}", report)
    table = headline(frame)
    below = table[table["value"] <= table["chance"]]
    missing = sorted(({spec.name for spec in specs} - set(frame["dataset"])) | set(not_evaluated))
    nan_rows = frame[frame["value"].isna()]
    bars = [
        (f"{r.dataset} {r.metric}", float(r.value), float(r.chance)) for r in table.itertuples()
    ]
    return dg.MaterializeResult(
        metadata={
            "source": label,
            "checkpoint": dg.MetadataValue.path(checkpoint),
            "model": dg.MetadataValue.path(model_path),
            "head": config.head,
            "report_html": dg.MetadataValue.path(reports[".html"]),
            "report_markdown": dg.MetadataValue.path(reports[".md"]),
            "report_json": dg.MetadataValue.path(reports[".json"]),
            "datasets": len(specs),
            "rows": len(frame),
            "not_evaluated": dg.MetadataValue.json(not_evaluated),
            "headline": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".2f")),
            "datasets_at_or_below_chance": len(below),
            "headline_plot": dg.MetadataValue.md(
                markdown_image(svg_bars(bars), "headline metric (bars) against chance (red)")
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_dataset_evaluated",
                passed=not missing and nan_rows.empty,
                description=(
                    f"not evaluated: {', '.join(missing)}" if missing else "all evaluated"
                ),
                metadata={
                    "missing": dg.MetadataValue.json(missing),
                    "why": dg.MetadataValue.json(not_evaluated),
                    "nan_rows": len(nan_rows),
                },
            )
        ],
    )


# what the download worker counts as images it could not use
UNUSABLE = ("missing", "mismatched", "refused")


class EvalImagesConfig(dg.Config):
    suite_file: str = ""
    base_url: str = ""
    """Where relative source URLs point; the demo's suite: its image folder, served on
    loopback for the run."""
    workers: int = 8
    allowed_hosts: list[str] = []
    """Hosts (``host`` or ``host:port``) that may be fetched although they resolve to a
    private or loopback address (an image mirror inside the cluster); others are refused."""
    max_bytes: int = MAX_BYTES
    """The largest image accepted, in bytes."""
    deadline: float = DEADLINE
    """Seconds one image may take to download, all attempts together."""


@dg.asset(
    key="eval_images",
    group_name="evaluation",
    kinds={"python"},
    owners=OWNERS,
    code_version="1",
    description=(
        "The benchmark images listed by URL in the retrieval annotations, downloaded into "
        "the image root and verified against their md5 (as cautious-robot does); resumes "
        "where it stopped; missing and mismatched files are counted, never used."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "every_image_present",
            asset="eval_images",
            description="every listed image is on disk and matches its md5 (none missing, "
            "mismatched or refused)",
        )
    ],
)
def eval_images(
    context: dg.AssetExecutionContext,
    config: EvalImagesConfig,
    sources: SourcesResource,
    launcher: LauncherResource,
) -> dg.MaterializeResult:
    specs, label = resolve_suite(
        EvalConfig(suite_file=config.suite_file), sources, context, launcher
    )
    demo_images = ""
    if not config.base_url and label.startswith("demo"):
        demo_images = str(sources.demo_world(context, launcher, "BIOCAP_EVAL_DATA").eval_images)
    items = []
    for spec in specs:
        if spec.task != "retrieval":
            continue
        data = read_retrieval(Path(spec.annotation), spec.name)
        for image in data.images:
            items.append(
                {
                    "url": data.urls[image],
                    "root": spec.image_root,
                    "name": image,
                    "md5": data.md5.get(image, ""),
                }
            )
    report = launcher.run(
        context,
        "download",
        extras={
            "items": items,
            "workers": config.workers,
            "base_url": config.base_url,
            "demo_images": demo_images,
            "allowed_hosts": list(config.allowed_hosts),
            "max_bytes": config.max_bytes,
            "deadline": config.deadline,
        },
    ).get_custom_messages()[-1]
    return dg.MaterializeResult(
        metadata={
            "source": label,
            "images": len(items),
            **{k: report[k] for k in ("downloaded", "already_present", *UNUSABLE)},
            **{f"{k}_examples": dg.MetadataValue.json(report[f"{k}_examples"]) for k in UNUSABLE},
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_image_present",
                passed=not any(report[k] for k in UNUSABLE),
                # a missing image is left out of retrieval, which then scores fewer pairs
                severity=dg.AssetCheckSeverity.WARN,
                metadata={k: report[k] for k in UNUSABLE},
            )
        ],
    )
