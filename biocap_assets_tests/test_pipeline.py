"""The whole graph on the demo world, as `biocap demo` runs it."""

import dagster as dg
import duckdb
import pytest


@pytest.mark.slow
def test_whole_graph_on_the_demo_world(fresh_defs, biocap_home):
    from biocap_assets.jobs import run_everything

    results = run_everything(fresh_defs, dg.DagsterInstance.ephemeral())
    assert all(r.success for r in results)
    assert len(results) == 1 + 4 + 1, "text assets, one run per demo shard, then train+eval"
    checks = {
        (c.check_name, c.partition): c.passed
        for r in results
        for c in r.get_asset_check_evaluations()
    }
    assert checks and all(checks.values()), checks
    with duckdb.connect(str(biocap_home / "biocap.duckdb"), read_only=True) as connection:
        taxa = connection.execute("SELECT count(*) FROM taxa").fetchall()[0][0]
        wiki = dict(
            connection.execute("SELECT status, count(*) FROM wiki_pages GROUP BY status").fetchall()
        )
        stats = connection.execute(
            "SELECT count(*), sum(samples), sum(captioned) FROM shard_stats"
        ).fetchall()[0]
    assert taxa == 32
    assert sum(wiki.values()) == 32
    assert wiki["found"] >= 20 and wiki["no_page"] >= 3
    assert stats[0] == 4 and stats[1] == stats[2] == 777
    # The tiny model beats chance clearly on every demo eval.
    with duckdb.connect(str(biocap_home / "biocap.duckdb"), read_only=True) as connection:
        headline = connection.execute(
            "SELECT task, dataset, metric, value, chance FROM eval_results "
            "WHERE metric IN ('top1', 'top5', 'text_to_image_R@10', 'image_to_text_R@5', 'AP', "
            "'nDCG', 'MRR')"
        ).fetchall()
        missing = connection.execute(
            "SELECT sum(value) FROM eval_results WHERE metric = 'missing_images'"
        ).fetchall()
    assert {row[0] for row in headline} == {"zero_shot", "retrieval", "inquire_rerank"}
    for task, dataset, metric, value, chance in headline:
        # three times chance, or 15% of the way from chance to perfect (nDCG's chance is
        # already ~50%). R@1 is left out: the reference scores retrieval with the taxonomic
        # head, which tells a species' three images apart no better than chance.
        clearly = value >= 3 * chance or value - chance >= 0.15 * (100 - chance)
        assert clearly, (task, dataset, metric, value, chance)
    assert missing[0][0] == 0
    for result in results:
        for mat in result.get_asset_materialization_events():
            metadata = mat.event_specific_data.materialization.metadata
            if "source" in metadata:
                assert metadata["source"].value == "demo (synthetic)"
