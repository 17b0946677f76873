"""taxa_table: the distinct 7-rank taxa of the TreeOfLife-10M catalog.

(No `from __future__ import annotations` here: Dagster reads these annotations.)
"""

import tempfile

import dagster as dg
import duckdb as duckdb_lib
import pandas as pd

from biocap_assets.assets import columns
from biocap_assets.assets.columns import column_metadata
from biocap_assets.assets.common import OWNERS, ShrinkGuard, check_shrink
from biocap_assets.common.files import register_filesystem
from biocap_assets.common.secrets import redact
from biocap_assets.resources import LauncherResource, SourcesResource
from biocap_assets.resources.duckdb import BiocapDuckDB
from biocap_assets.taxonomy.catalog import check_catalog
from biocap_assets.taxonomy.names import RANKS
from biocap_assets.taxonomy.taxa import TaxaResult, build_taxa

MISSING_RANK_CHECK = "missing_rank_share_below_threshold"


class TaxaConfig(ShrinkGuard):
    max_missing_rank_share: float = 0.3
    """Fail the missing-rank check when more catalog rows than this lack a rank."""


def _markdown(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    return pd.DataFrame(rows, columns=columns).to_markdown(index=False)


def taxa_metadata(result: TaxaResult, source_label: str, catalog_url: str) -> dict:
    table = result.table
    preview_cols = ["binomial", "common_name", "class", "family", "n_images", "is_ambiguous"]
    ambiguous = (
        table.filter(table["is_ambiguous"])
        .select(["binomial", "kingdom", "class", "family", "n_images"])
        .to_pylist()
    )
    return {
        "source": source_label,
        "catalog": dg.MetadataValue.path(redact(catalog_url)),
        "catalog_rows": result.catalog_rows,
        "complete_rows": result.complete_rows,
        "incomplete_rows": result.incomplete_rows,
        "missing_rank_share": round(result.missing_share, 6),
        "missing_by_rank": dg.MetadataValue.json(result.missing_by_rank),
        "taxa": table.num_rows,
        "ambiguous_binomials": result.ambiguous_binomials,
        # The 20 taxa with the most images.
        "preview": dg.MetadataValue.md(
            _markdown(
                table.sort_by([("n_images", "descending"), ("binomial", "ascending")])
                .slice(0, 20)
                .select(preview_cols)
                .to_pylist(),
                preview_cols,
            )
        ),
        "ambiguous_preview": dg.MetadataValue.md(
            _markdown(ambiguous[:20], ["binomial", "kingdom", "class", "family", "n_images"])
        ),
        "incomplete_preview": dg.MetadataValue.md(
            _markdown(result.incomplete_preview, [*RANKS, "n_images"])
        ),
    }


@dg.asset(
    key="taxa_table",
    group_name="taxa",
    io_manager_key="table_io_manager",
    metadata={"table": "taxa", **column_metadata(columns.TAXA)},
    kinds={"duckdb"},
    owners=OWNERS,
    code_version="2",  # 2: whitespace runs, BOM and shrink guard (19808d8)
    check_specs=[
        dg.AssetCheckSpec(
            MISSING_RANK_CHECK,
            asset="taxa_table",
            description="share of catalog rows lacking a rank",
        )
    ],
    description=(
        "One row per distinct 7-rank taxon of the TreeOfLife-10M catalog (DuckDB table "
        "`taxa`): binomial, common name(s), image count, and `is_ambiguous` for binomials "
        "found under more than one 7-rank tuple. Rows missing a rank are counted per rank."
    ),
)
def taxa_table(
    context: dg.AssetExecutionContext,
    config: TaxaConfig,
    sources: SourcesResource,
    launcher: LauncherResource,
    duckdb: BiocapDuckDB,
):
    catalog = sources.catalog(context, launcher)
    header = check_catalog(catalog.url)
    context.log.info(f"scanning catalog {redact(catalog.url)} ({catalog.label})")
    with (
        tempfile.TemporaryDirectory(prefix="biocap-taxa-") as spill,
        duckdb_lib.connect(config={"temp_directory": spill}) as connection,
    ):
        register_filesystem(connection, catalog.url)
        result = build_taxa(connection, catalog.url, header)
    context.log.info(
        f"{result.table.num_rows} taxa from {result.catalog_rows} catalog rows "
        f"({result.incomplete_rows} lacking a rank)"
    )
    source = f"catalog {redact(catalog.url)}"
    check_shrink(config, duckdb, "taxa", result.table.num_rows, source)
    yield dg.Output(result.table, metadata=taxa_metadata(result, catalog.label, catalog.url))
    yield dg.AssetCheckResult(
        check_name=MISSING_RANK_CHECK,
        passed=result.missing_share <= config.max_missing_rank_share,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "missing_rank_share": round(result.missing_share, 6),
            "threshold": config.max_missing_rank_share,
            "missing_by_rank": dg.MetadataValue.json(result.missing_by_rank),
        },
    )


@dg.asset_check(asset=taxa_table, description="no 7-rank tuple appears twice in `taxa`")
def no_duplicate_taxa(duckdb: BiocapDuckDB) -> dg.AssetCheckResult:
    ranks = ", ".join(f'"{r}"' for r in RANKS)
    with duckdb.get_connection() as connection:
        duplicates = connection.execute(
            f"SELECT {ranks}, count(*) AS n FROM main.taxa GROUP BY ALL HAVING n > 1 LIMIT 20"
        ).fetchall()
        total = connection.execute("SELECT count(*) FROM main.taxa").fetchall()[0][0]
    return dg.AssetCheckResult(
        passed=not duplicates,
        metadata={
            "taxa": total,
            "duplicate_tuples": len(duplicates),
            "examples": dg.MetadataValue.json([list(d) for d in duplicates]),
        },
    )
