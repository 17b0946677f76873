"""Tables land in DuckDB (whole or per partition); artifacts land under the storage root."""

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from upath import UPath

from biocap_assets.resources import (
    ArtifactIOManager,
    BiocapDuckDB,
    DuckDBTableIOManager,
    StorageResource,
)


@pytest.fixture
def resources(tmp_path):
    storage = StorageResource(root_url=(tmp_path / "storage").as_uri())
    db = BiocapDuckDB(database=str(tmp_path / "db" / "biocap.duckdb"))
    return {
        "storage": storage,
        "duckdb": db,
        "table_io_manager": DuckDBTableIOManager(duckdb=db, storage=storage),
        "io_manager": ArtifactIOManager(storage=storage),
    }


def _rows(db_path, sql):
    with duckdb.connect(str(db_path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def test_table_output_replaces_the_table_and_snapshots_parquet(resources, tmp_path):
    values = {"n": 3}

    @dg.asset(io_manager_key="table_io_manager", metadata={"table": "things"})
    def things() -> pa.Table:
        return pa.table({"x": list(range(values["n"]))})

    first = dg.materialize([things], resources=resources)
    values["n"] = 2
    dg.materialize([things], resources=resources)
    db = tmp_path / "db" / "biocap.duckdb"
    assert _rows(db, "SELECT x FROM things ORDER BY x") == [(0,), (1,)]
    (mat,) = first.asset_materializations_for_node("things")
    assert mat.metadata["dagster/row_count"].value == 3
    snapshot = mat.metadata["parquet_snapshot"].value
    assert pd.read_parquet(snapshot)["x"].tolist() == [0, 1]  # the latest write


def test_partitioned_table_replaces_only_its_partition(resources, tmp_path):
    parts = dg.StaticPartitionsDefinition(["000000", "000001"])
    runs = {"count": 0}

    @dg.asset(partitions_def=parts, io_manager_key="table_io_manager", metadata={"table": "stats"})
    def stats(context: dg.AssetExecutionContext) -> pd.DataFrame:
        runs["count"] += 1
        return pd.DataFrame({"shard": [context.partition_key], "run": [runs["count"]]})

    for key in ("000000", "000001", "000000"):
        dg.materialize([stats], partition_key=key, resources=resources)
    rows = _rows(
        tmp_path / "db" / "biocap.duckdb",
        "SELECT partition_key, run FROM stats ORDER BY partition_key",
    )
    assert rows == [("000000", 3), ("000001", 2)]

    @dg.asset(partitions_def=parts, ins={"stats": dg.AssetIn(input_manager_key="table_io_manager")})
    def downstream(stats: pa.Table) -> None:
        assert stats.column("partition_key").to_pylist() == ["000001"]

    assert dg.materialize(
        [stats.to_source_asset(), downstream], partition_key="000001", resources=resources
    ).success


def test_a_partition_with_new_columns_extends_an_earlier_table(resources, tmp_path):
    """shard_stats written by an earlier release lacks the prompt and digest columns: the
    next partition adds them, and the old rows keep NULL there."""
    parts = dg.StaticPartitionsDefinition(["000000", "000001"])
    columns = {"shard": ["x"], "samples": [3]}

    @dg.asset(partitions_def=parts, io_manager_key="table_io_manager", metadata={"table": "stats"})
    def stats(context: dg.AssetExecutionContext) -> pa.Table:
        return pa.table({**columns, "shard": [context.partition_key]})

    dg.materialize([stats], partition_key="000000", resources=resources)
    columns["sha256"] = ["abc"]
    dg.materialize([stats], partition_key="000001", resources=resources)
    rows = _rows(
        tmp_path / "db" / "biocap.duckdb",
        "SELECT partition_key, samples, sha256 FROM stats ORDER BY partition_key",
    )
    assert rows == [("000000", 3, None), ("000001", 3, "abc")]


def test_failed_write_keeps_the_previous_table(resources, tmp_path):
    @dg.asset(io_manager_key="table_io_manager", metadata={"table": "things"})
    def things() -> pa.Table:
        return pa.table({"x": [1, 2]})

    dg.materialize([things], resources=resources)

    @dg.asset(io_manager_key="table_io_manager", metadata={"table": "things"}, key="things")
    def things_broken() -> list:
        return [1, 2, 3]

    with pytest.raises(TypeError, match="pyarrow Table or pandas DataFrame"):
        dg.materialize([things_broken], resources=resources)
    assert _rows(tmp_path / "db" / "biocap.duckdb", "SELECT count(*) FROM things") == [(2,)]


def test_artifacts_are_files_and_downstream_gets_a_path(resources):
    @dg.asset
    def report() -> dict:
        return {"accuracy": 0.5}

    @dg.asset
    def table_artifact() -> pa.Table:
        return pa.table({"a": [1]})

    seen = {}

    @dg.asset
    def consumer(report: UPath, table_artifact: UPath) -> None:
        seen["report"], seen["table"] = report, table_artifact

    result = dg.materialize([report, table_artifact, consumer], resources=resources)
    assert result.success
    assert seen["report"].name == "data.json"
    assert seen["report"].read_text().strip().startswith("{")
    assert seen["table"].name == "data.parquet"
    assert str(seen["report"]).startswith(
        resources["storage"].root_url.replace("file://", "")
    ) or str(seen["report"]).startswith(resources["storage"].root_url)


def test_missing_upstream_table_is_a_clear_failure(resources):
    @dg.asset(io_manager_key="table_io_manager", metadata={"table": "never"})
    def never() -> pa.Table:
        return pa.table({"a": [1]})

    @dg.asset(ins={"never": dg.AssetIn(input_manager_key="table_io_manager")})
    def reader(never: pa.Table) -> None:
        return None

    with pytest.raises(dg.Failure, match="table main.never does not exist yet"):
        dg.materialize([never.to_source_asset(), reader], resources=resources)
