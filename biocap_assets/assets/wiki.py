"""wiki_pages: each taxon's English Wikipedia page and the text of its visual sections.

(No `from __future__ import annotations` here: Dagster reads these annotations.)

The crawl runs in the ``wiki`` worker (Scrapy) through the launcher. Its Parquet
parts under ``<storage>/wiki/parts`` are the journal: this step loads every part
(also those of a crawl that was killed), so taxa already fetched are skipped
unless ``refresh`` is set, and compacts the parts once the table is built.
"""

import time

import dagster as dg
import pandas as pd
import pyarrow as pa

from biocap_assets.assets import columns
from biocap_assets.assets.columns import column_metadata
from biocap_assets.assets.common import OWNERS
from biocap_assets.common.files import parquet_bytes
from biocap_assets.common.secrets import redact
from biocap_assets.resources import LauncherResource, SourcesResource, StorageResource
from biocap_assets.scraping import state
from biocap_assets.scraping.sections import VISUAL_KEYWORDS
from biocap_assets.scraping.settings import CrawlOptions

STATUSES = ("found", "no_visual_section", "no_page", "disambiguation", "error")


class WikiConfig(dg.Config):
    refresh: bool = False
    """Fetch every taxon again, not only those without a final status."""
    retry_errors: bool = True
    """Fetch again the taxa whose last attempt ended in an error."""
    concurrency: int = 3
    timeout_seconds: float = 30.0
    retry_times: int = 4
    keep_lead: bool = True
    """For pages without a visual section, keep the whole lead (flagged text_is_lead)."""
    keywords: list[str] = list(VISUAL_KEYWORDS)
    """BioCAP's scraper's keywords, in its order of priority."""
    section_policy: str = "reference"
    """reference: one section, the first heading matching the highest-priority keyword, as
    BioCAP's scraper takes it; all: every section whose heading has a keyword."""
    flush_every: int = 200
    progress_every: int = 100


def _preview(table: pa.Table, n: int = 10) -> str:
    found = table.filter(pa.compute.equal(table["status"], "found")).slice(0, n)
    rows = [
        {
            "binomial": r["binomial"],
            "headings": ", ".join(r["headings"]),
            "text": (r["text"] or "")[:160].replace("\n", " ") + "...",
        }
        for r in found.to_pylist()
    ]
    return (
        pd.DataFrame(rows, columns=["binomial", "headings", "text"]).to_markdown(index=False)
        if rows
        else "(no page with a visual section yet)"
    )


@dg.asset(
    key="wiki_pages",
    group_name="wiki",
    ins={"taxa_table": dg.AssetIn(input_manager_key="table_io_manager")},
    io_manager_key="table_io_manager",
    metadata={"table": "wiki_pages", **column_metadata(columns.WIKI_PAGES)},
    kinds={"scrapy", "duckdb"},
    owners=OWNERS,
    code_version="2",  # one section, chosen as BioCAP's scraper chooses it
    description=(
        "Each taxon's English Wikipedia page (MediaWiki Action API, crawled with Scrapy) and "
        "the text of its visual sections (Description, Appearance, Morphology, ...). Status "
        "per taxon: found | no_visual_section | no_page | disambiguation | error, with the "
        "reason. Incremental: taxa already fetched are skipped unless `refresh`."
    ),
)
def wiki_pages(
    context: dg.AssetExecutionContext,
    config: WikiConfig,
    taxa_table: pa.Table,
    sources: SourcesResource,
    launcher: LauncherResource,
    storage: StorageResource,
):
    wiki = sources.wiki(context, launcher)
    parts_dir = storage.path("wiki", "parts")
    known = state.latest_per_taxon(state.read_parts(state.list_parts(parts_dir)))
    todo = state.plan_crawl(
        taxa_table, known, refresh=config.refresh, retry_errors=config.retry_errors
    )
    context.log.info(f"{todo.num_rows} of {taxa_table.num_rows} taxa to fetch from {wiki.label}")
    report: dict = {}
    if todo.num_rows:
        todo_path = storage.write_bytes(
            "wiki", "todo", f"{context.run.run_id}.parquet", data=parquet_bytes(todo)
        )
        options = CrawlOptions(
            contact=sources.wiki_contact,
            concurrency=config.concurrency,
            timeout=config.timeout_seconds,
            retry_times=config.retry_times,
            keep_lead=config.keep_lead,
            keywords=tuple(config.keywords),
            section_policy=config.section_policy,
            flush_every=config.flush_every,
            progress_every=config.progress_every,
        )
        try:
            invocation = launcher.run(
                context,
                "wiki",
                extras={
                    **options.as_extras(),
                    "todo": str(todo_path),
                    "parts": str(parts_dir),
                    "api_url": wiki.url,
                    "demo_wiki": wiki.demo_dir,
                },
            )
            report = invocation.get_custom_messages()[-1]
        finally:
            todo_path.unlink(missing_ok=True)  # the flushed parts are kept, not the input

    parts = state.list_parts(parts_dir)
    latest = state.latest_per_taxon(state.read_parts(parts))
    table = state.current_rows(latest, taxa_table)
    state.compact(parts_dir, parts, latest, f"compacted-{int(time.time())}.parquet")

    statuses = table["status"].to_pylist()
    counts = {s: statuses.count(s) for s in STATUSES}
    with_visual = counts["found"] / len(statuses) if statuses else 0.0
    metadata = {
        "source": wiki.label,
        "api_url": redact(wiki.url) or "(demo wiki served on loopback)",
        "taxa": taxa_table.num_rows,
        "rows": table.num_rows,
        "fetched_this_run": todo.num_rows,
        "skipped_already_fetched": taxa_table.num_rows - todo.num_rows,
        "status_counts": dg.MetadataValue.json(counts),
        "share_with_visual_section": round(with_visual, 4),
        "preview": dg.MetadataValue.md(_preview(table)),
    }
    if report:
        metadata |= {
            "requests": report["requests"],
            "requests_per_taxon": report["requests_per_taxon"],
            "retries": report["retries"],
            "responses_429": report["responses_429"],
            "crawl_seconds": report["seconds"],
        }
    return dg.Output(table, metadata=metadata)


@dg.asset_check(
    asset=wiki_pages,
    description="every taxon of `taxa` has a wiki_pages row",
    additional_ins={"taxa_table": dg.AssetIn(input_manager_key="table_io_manager")},
)
def every_taxon_has_a_row(wiki_pages: pa.Table, taxa_table: pa.Table) -> dg.AssetCheckResult:
    missing = set(taxa_table["taxon_id"].to_pylist()) - set(wiki_pages["taxon_id"].to_pylist())
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={"missing": len(missing), "examples": dg.MetadataValue.json(sorted(missing)[:10])},
    )


@dg.asset_check(asset=wiki_pages, description="share of taxa whose fetch ended in an error")
def error_share_below_threshold(wiki_pages: pa.Table) -> dg.AssetCheckResult:
    statuses = wiki_pages["status"].to_pylist()
    share = statuses.count("error") / len(statuses) if statuses else 0.0
    return dg.AssetCheckResult(
        passed=share <= 0.05,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"error_share": round(share, 4), "threshold": 0.05},
    )
