"""One writer process of the concurrent-catalog test: materializes partitions of a table.

``python -m biocap_assets_tests.catalog_writer WRITER KEY...`` with the catalog chosen by
the same variables as production (BIOCAP_DUCKDB_PATH, or BIOCAP_DUCKLAKE_CATALOG and
BIOCAP_DUCKLAKE_DATA_PATH) and the storage root in BIOCAP_STORAGE_URL.
"""

# (no `from __future__ import annotations`: Dagster reads the context annotation)

import os
import sys
from collections.abc import Mapping

import dagster as dg
import pyarrow as pa

from biocap_assets.resources import BiocapDuckDB, DuckDBTableIOManager, StorageResource

KEYS = [f"{i:06d}" for i in range(32)]
ROWS_PER_PARTITION = 50


def catalog_from_env(env: Mapping[str, str]) -> BiocapDuckDB:
    """The catalog the variables name: DuckLake when its catalog is set, else the file."""
    return BiocapDuckDB(
        database=env.get("BIOCAP_DUCKDB_PATH", ":memory:"),
        ducklake_catalog=env.get("BIOCAP_DUCKLAKE_CATALOG", ""),
        ducklake_data_path=env.get("BIOCAP_DUCKLAKE_DATA_PATH", ""),
    )


def resources() -> dict:
    storage = StorageResource(root_url=os.environ["BIOCAP_STORAGE_URL"])
    db = catalog_from_env(os.environ)
    return {"table_io_manager": DuckDBTableIOManager(duckdb=db, storage=storage)}


def main(writer: str, keys: list[str]) -> None:
    @dg.asset(
        partitions_def=dg.StaticPartitionsDefinition(KEYS),
        io_manager_key="table_io_manager",
        metadata={"table": "shard_stats"},
    )
    def stats(context: dg.AssetExecutionContext) -> pa.Table:
        n = ROWS_PER_PARTITION
        return pa.table(
            {
                "shard": [context.partition_key] * n,
                "writer": [writer] * n,
                "sample": list(range(n)),
            }
        )

    for key in keys:
        result = dg.materialize([stats], partition_key=key, resources=resources())
        if not result.success:
            raise SystemExit(f"writer {writer}: partition {key} failed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
