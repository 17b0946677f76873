"""taxa_table materialized through Dagster: in process, through the CLI, and on bad input."""

import os
import subprocess
import sys

import dagster as dg
import duckdb
import pytest

from biocap_assets_tests.test_taxa import GRASS, RAVEN, write_catalog


def materialize_taxa(defs, **kwargs):
    """taxa_table and its checks only, with the resources the definitions chose."""
    from biocap_assets.assets.taxa import no_duplicate_taxa, taxa_table

    return dg.materialize(
        [taxa_table, no_duplicate_taxa],
        resources=defs.resources,
        **kwargs,  # on an ephemeral instance, disposed of after the run
    )


def _taxa_rows(home):
    with duckdb.connect(str(home / "biocap.duckdb"), read_only=True) as connection:
        return connection.execute(
            "SELECT binomial, kingdom, n_images, is_ambiguous FROM taxa ORDER BY binomial, kingdom"
        ).fetchall()


def test_materialize_on_the_demo_world(fresh_defs, biocap_home):
    result = materialize_taxa(fresh_defs)
    assert result.success
    rows = _taxa_rows(biocap_home)
    assert len(rows) == 32
    assert ("Digitaria sanguinalis", "Animalia", 28, True) in rows
    (mat,) = result.asset_materializations_for_node("taxa_table")
    meta = mat.metadata
    assert meta["source"].value == "demo (synthetic)"
    assert meta["taxa"].value == 32 and meta["ambiguous_binomials"].value == 3
    assert meta["missing_by_rank"].value["species"] == 9  # 3 INCOMPLETE_ROWS lack it, 3 each
    assert meta["dagster/row_count"].value == 32
    assert "Amanita muscaria" in meta["preview"].value
    assert (biocap_home / "storage" / "tables" / "taxa.parquet").is_file()
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"missing_rank_share_below_threshold": True, "no_duplicate_taxa": True}


def test_configured_catalog_and_threshold(fresh_defs, biocap_home, monkeypatch, tmp_path):
    import importlib

    import biocap_assets.definitions as definitions

    no_species = RAVEN[:6] + ("",)
    catalog = write_catalog(
        tmp_path / "catalog.csv", [(RAVEN, "raven"), (GRASS, "crabgrass"), (no_species, "")]
    )
    monkeypatch.setenv("BIOCAP_CATALOG_URL", catalog)
    defs = importlib.reload(definitions).defs
    result = materialize_taxa(
        defs, run_config={"ops": {"taxa_table": {"config": {"max_missing_rank_share": 0.2}}}}
    )
    assert result.success  # a WARN check does not fail the run
    (mat,) = result.asset_materializations_for_node("taxa_table")
    assert mat.metadata["source"].value.startswith("configured")
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    failed = checks["missing_rank_share_below_threshold"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.WARN
    assert len(_taxa_rows(biocap_home)) == 2


def test_bad_catalog_fails_naming_the_file_and_keeps_the_old_table(
    fresh_defs, biocap_home, monkeypatch, tmp_path
):
    import importlib

    import biocap_assets.definitions as definitions

    assert materialize_taxa(fresh_defs).success
    before = _taxa_rows(biocap_home)

    bad = tmp_path / "broken.csv"
    bad.write_text("split,treeoflife_id,kingdom\ntrain,x,Animalia\n")
    monkeypatch.setenv("BIOCAP_CATALOG_URL", str(bad))
    defs = importlib.reload(definitions).defs
    with pytest.raises(Exception, match=r"broken\.csv: missing column\(s\) phylum, class"):
        materialize_taxa(defs)
    assert _taxa_rows(biocap_home) == before


def test_a_catalog_that_would_empty_or_halve_the_table_fails_and_keeps_it(
    fresh_defs, biocap_home, monkeypatch, tmp_path
):
    import importlib

    import biocap_assets.definitions as definitions

    assert materialize_taxa(fresh_defs).success
    before = _taxa_rows(biocap_home)
    assert len(before) == 32

    monkeypatch.setenv("BIOCAP_CATALOG_URL", write_catalog(tmp_path / "header-only.csv", []))
    defs = importlib.reload(definitions).defs
    with pytest.raises(dg.Failure, match=r"table taxa: catalog .*header-only\.csv gives no rows"):
        materialize_taxa(defs)
    assert _taxa_rows(biocap_home) == before

    few = write_catalog(tmp_path / "few.csv", [(RAVEN, "raven"), (GRASS, "crabgrass")])
    monkeypatch.setenv("BIOCAP_CATALOG_URL", few)
    defs = importlib.reload(definitions).defs
    with pytest.raises(dg.Failure, match=r"gives 2 rows where the table has 32.*allow_shrink"):
        materialize_taxa(defs)
    assert _taxa_rows(biocap_home) == before

    intended = {"ops": {"taxa_table": {"config": {"allow_shrink": True}}}}
    assert materialize_taxa(defs, run_config=intended).success
    assert len(_taxa_rows(biocap_home)) == 2


@pytest.mark.slow
def test_dagster_cli_materializes_taxa_table(biocap_home, tmp_path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {**os.environ, "BIOCAP_HOME": str(biocap_home), "DAGSTER_HOME": str(dagster_home)}
    done = subprocess.run(
        [
            os.path.join(os.path.dirname(sys.executable), "dagster"),
            "asset",
            "materialize",
            "-m",
            "biocap_assets.definitions",
            "--select",
            "taxa_table",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(_taxa_rows(biocap_home)) == 32
    instance_storage = dagster_home / "storage"
    assert instance_storage.exists(), "the run was recorded in DAGSTER_HOME"


@pytest.fixture
def http_server(demo_world):
    """The demo world served over HTTP on 127.0.0.1 (a free port)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(demo_world.root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_catalog_read_over_http(biocap_home, monkeypatch, http_server):
    import importlib

    import biocap_assets.definitions as definitions

    monkeypatch.setenv("BIOCAP_CATALOG_URL", f"{http_server}/catalog.csv")
    defs = importlib.reload(definitions).defs
    result = materialize_taxa(defs)
    assert result.success
    assert len(_taxa_rows(biocap_home)) == 32
    monkeypatch.setenv("BIOCAP_CATALOG_URL", f"{http_server}/missing.csv")
    defs = importlib.reload(definitions).defs
    with pytest.raises(Exception, match=r"missing\.csv: cannot be read"):
        materialize_taxa(defs)
