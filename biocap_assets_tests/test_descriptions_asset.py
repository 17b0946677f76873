"""visual_descriptions through Dagster: CPU fallback labelled, buckets, released descriptions."""

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def _rows(home):
    with duckdb.connect(str(home / "biocap.duckdb"), read_only=True) as connection:
        return connection.execute(
            "SELECT binomial, kingdom, description, status, backend, model "
            "FROM visual_descriptions ORDER BY binomial, kingdom"
        ).fetchall()


@pytest.mark.slow
def test_cpu_fallback_buckets_and_released(fresh_defs, biocap_home, tmp_path, instance):
    job = fresh_defs.resolve_job_def("prepare_text")
    result = job.execute_in_process(instance=instance)
    assert result.success
    rows = _rows(biocap_home)
    assert len(rows) == 32
    by_name = {(r[0], r[1]): r for r in rows}
    cardinal = by_name[("Cardinalis cardinalis", "Animalia")]
    assert cardinal[3] == "ok" and "red" in cardinal[2]
    assert "found across" not in cardinal[2], "habitat sentences are dropped"
    assert {r[4:] for r in rows} == {("cpu", "rule-filter-v1")}
    assert by_name[("Lucilia sericata", "Animalia")][3] == "no_text"
    (mat,) = result.asset_materializations_for_node("visual_descriptions")
    assert mat.metadata["cpu_fallback"].value is True
    assert mat.metadata["source"].value == "demo (synthetic)"

    split = job.execute_in_process(
        instance=instance, run_config={"ops": {"visual_descriptions": {"config": {"buckets": 2}}}}
    )
    assert split.success
    assert _rows(biocap_home) == rows, "two workers give the same table as one"
    (mat,) = split.asset_materializations_for_node("visual_descriptions")
    assert mat.metadata["buckets"].value == 2

    released = tmp_path / "wiki_description.parquet"
    pq.write_table(
        pa.table(
            {
                "binomial": ["Cardinalis cardinalis"],
                "description": ["Released: a red songbird with a crest."],
            }
        ),
        released,
    )
    loaded = job.execute_in_process(
        instance=instance,
        run_config={
            "ops": {
                "visual_descriptions": {
                    "config": {"backend": "released", "released_url": str(released)}
                }
            }
        },
    )
    assert loaded.success
    by_name = {(r[0], r[1]): r for r in _rows(biocap_home)}
    assert by_name[("Cardinalis cardinalis", "Animalia")][2:4] == (
        "Released: a red songbird with a crest.",
        "ok",
    )
    assert by_name[("Corvus corax", "Animalia")][3] == "empty"
    assert {r[4] for r in by_name.values() if r[3] != "no_text"} == {"released"}

    # wiki_pages cut to two rows (a crawl that lost its taxa): rebuilding would lose most of
    # visual_descriptions, so the step fails and the table stays as it was
    with duckdb.connect(str(biocap_home / "biocap.duckdb")) as connection:
        connection.execute(
            "DELETE FROM wiki_pages WHERE binomial NOT IN ('Cardinalis cardinalis', 'Corvus corax')"
        )
    before = _rows(biocap_home)
    with pytest.raises(dg.Failure, match=r"table visual_descriptions: .* gives 2 rows where"):
        job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("visual_descriptions")]
        )
    assert _rows(biocap_home) == before
