"""The whole graph on the demo world, as `biocap demo` runs it."""

import dagster as dg
import duckdb
import pytest


@pytest.mark.slow
def test_whole_graph_on_the_demo_world(fresh_defs, biocap_home):
    result = fresh_defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    with duckdb.connect(str(biocap_home / "biocap.duckdb"), read_only=True) as connection:
        taxa = connection.execute("SELECT count(*) FROM taxa").fetchall()[0][0]
        wiki = dict(
            connection.execute("SELECT status, count(*) FROM wiki_pages GROUP BY status").fetchall()
        )
    assert taxa == 32
    assert sum(wiki.values()) == 32
    assert wiki["found"] >= 20 and wiki["no_page"] >= 3
    for mat in result.get_asset_materialization_events():
        metadata = mat.event_specific_data.materialization.metadata
        assert metadata["source"].value == "demo (synthetic)"
