"""The crawl's state: what is fetched already, what to fetch next.

The Parquet parts the crawler writes are the journal; the ``wiki_pages`` table is
the latest row per taxon across all parts. Pure functions over Arrow tables, so
the incremental logic is tested without a crawl.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
from upath import UPath

from biocap_assets.common.files import read_parquet
from biocap_assets.scraping.pipelines import WIKI_SCHEMA, write_part
from biocap_assets.taxonomy.names import RANKS

FINAL_STATUSES = ("found", "no_page", "no_visual_section", "disambiguation")


def list_parts(folder: UPath) -> list[UPath]:
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(".parquet"))


def read_parts(parts: list[UPath]) -> pa.Table:
    tables = [read_parquet(str(part)).cast(WIKI_SCHEMA) for part in parts]
    return pa.concat_tables(tables) if tables else WIKI_SCHEMA.empty_table()


def latest_per_taxon(rows: pa.Table) -> pa.Table:
    """The newest row of each taxon (by ``fetched_at``), ordered by binomial."""
    with duckdb.connect() as connection:
        connection.register("journal", rows)
        latest = connection.sql(
            "SELECT * FROM journal QUALIFY row_number() OVER "
            "(PARTITION BY taxon_id ORDER BY fetched_at DESC) = 1 "
            "ORDER BY binomial, taxon_id"
        ).to_arrow_table()
    return latest.cast(WIKI_SCHEMA)


def plan_crawl(
    taxa: pa.Table, known: pa.Table, refresh: bool = False, retry_errors: bool = True
) -> pa.Table:
    """Taxa to fetch: all with ``refresh``; else those without a final row yet."""
    columns = ["taxon_id", "binomial", *RANKS, "is_ambiguous"]
    taxa = taxa.select(columns)
    if refresh or known.num_rows == 0:
        return taxa
    done_statuses = FINAL_STATUSES if retry_errors else (*FINAL_STATUSES, "error")
    done = {
        t
        for t, s in zip(known["taxon_id"].to_pylist(), known["status"].to_pylist(), strict=True)
        if s in done_statuses
    }
    mask = pa.array([t not in done for t in taxa["taxon_id"].to_pylist()], pa.bool_())
    return taxa.filter(mask)


def current_rows(latest: pa.Table, taxa: pa.Table) -> pa.Table:
    """Rows of taxa that are still in the taxa table (a taxon may have left the catalog)."""
    wanted = set(taxa["taxon_id"].to_pylist())
    mask = pa.array([t in wanted for t in latest["taxon_id"].to_pylist()], pa.bool_())
    return latest.filter(mask)


def compact(folder: UPath, parts: list[UPath], latest: pa.Table, name: str) -> UPath | None:
    """Replace ``parts`` by one part holding ``latest`` (written before any is deleted)."""
    if len(parts) <= 1:
        return parts[0] if parts else None
    target = write_part(folder, latest, name)
    for part in parts:
        if part.name != target.name:
            part.unlink()
    return target
