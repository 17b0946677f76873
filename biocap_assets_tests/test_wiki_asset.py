"""wiki_pages through Dagster on the demo world: incremental, refreshable, resumable."""

from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest
from upath import UPath

from biocap_assets.scraping.pipelines import WIKI_SCHEMA, write_part
from biocap_assets.taxonomy.names import RANKS


def _materialize(defs, run_config=None):
    job = defs.resolve_job_def("prepare_text")
    return job.execute_in_process(run_config=run_config or {})  # an ephemeral instance


def _meta(result):
    (mat,) = result.asset_materializations_for_node("wiki_pages")
    return {k: v.value for k, v in mat.metadata.items()}


def _wiki_rows(home):
    with duckdb.connect(str(home / "biocap.duckdb"), read_only=True) as connection:
        return connection.execute(
            "SELECT taxon_id, status, title, fetched_at FROM wiki_pages ORDER BY taxon_id"
        ).fetchall()


@pytest.mark.slow
def test_incremental_refresh_and_journal(fresh_defs, biocap_home):
    first = _materialize(fresh_defs)
    assert first.success
    meta = _meta(first)
    assert meta["source"] == "demo (synthetic)"
    assert meta["fetched_this_run"] == 32 and meta["rows"] == 32
    assert meta["status_counts"]["found"] == 24
    assert meta["requests_per_taxon"] <= 1.1 + 8 / 32  # 1.02 per found page plus the misses
    assert "Cardinalis cardinalis" in meta["preview"]
    rows = _wiki_rows(biocap_home)

    second = _materialize(fresh_defs)
    assert _meta(second)["fetched_this_run"] == 0
    assert _meta(second)["skipped_already_fetched"] == 32
    assert _wiki_rows(biocap_home) == rows, "nothing fetched, nothing changed"

    refreshed = _materialize(fresh_defs, {"ops": {"wiki_pages": {"config": {"refresh": True}}}})
    assert _meta(refreshed)["fetched_this_run"] == 32
    after = _wiki_rows(biocap_home)
    assert len(after) == 32 and all(a[3] > b[3] for a, b in zip(after, rows, strict=True))
    parts = list(UPath(biocap_home / "storage" / "wiki" / "parts").iterdir())
    assert len(parts) == 1 and parts[0].name.startswith("compacted-")


@pytest.mark.slow
def test_parts_of_an_interrupted_crawl_are_kept(fresh_defs, biocap_home, demo_world):
    from biocap_assets.taxonomy.taxa import build_taxa

    with duckdb.connect() as connection:
        taxa = build_taxa(connection, str(demo_world.catalog)).table.to_pylist()
    done = next(t for t in taxa if t["binomial"] == "Corvus corax")
    row = {
        **dict.fromkeys(WIKI_SCHEMA.names),
        **{k: done[k] for k in ("taxon_id", "binomial", *RANKS)},
        "headings": ["Description"],
        "text": "kept from a killed crawl",
        "text_is_lead": False,
        "status": "found",
        "fetched_at": datetime.now(UTC),
    }
    write_part(
        UPath(biocap_home / "storage" / "wiki" / "parts"),
        pa.Table.from_pylist([row], schema=WIKI_SCHEMA),
        "part-killed-00001.parquet",
    )
    result = _materialize(fresh_defs)
    assert _meta(result)["fetched_this_run"] == 31
    with duckdb.connect(str(biocap_home / "biocap.duckdb"), read_only=True) as connection:
        text = connection.execute(
            "SELECT text FROM wiki_pages WHERE binomial = 'Corvus corax'"
        ).fetchall()[0][0]
    assert text == "kept from a killed crawl"
