"""IO managers: tables into DuckDB, artifacts under the storage root.

``DuckDBTableIOManager`` takes a pyarrow Table (or pandas DataFrame) and
replaces the asset's DuckDB table in one transaction, or, for a partitioned
asset, only that partition's rows (a ``partition_key`` column). It also writes
a Parquet snapshot under ``<storage>/tables/`` so workers in other processes or
pods read the table without opening the DuckDB file.

``ArtifactIOManager`` stores an asset's value as a file under
``<storage>/assets/<key>/`` (Parquet for tables, JSON for dicts and lists,
raw bytes otherwise) and hands downstream assets the path, not the content.
"""

import contextlib
import json
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from upath import UPath

from biocap_assets.common.files import parquet_bytes
from biocap_assets.resources.duckdb import BiocapDuckDB, retry_on_conflict, table_exists
from biocap_assets.resources.storage import StorageResource

PARTITION_COLUMN = "partition_key"
_ARTIFACT_SUFFIXES = (".parquet", ".json", ".bin")


def _table_name(context: dg.OutputContext | dg.InputContext) -> str:
    """The table named in the producing asset's ``metadata={"table": ...}``, else its key."""
    if isinstance(context, dg.InputContext) and context.upstream_output is not None:
        metadata = context.upstream_output.definition_metadata or {}
    else:
        metadata = context.definition_metadata or {}
    name = metadata.get("table") or context.asset_key.path[-1]
    if not str(name).replace("_", "").isalnum():
        raise ValueError(f"asset {context.asset_key.to_user_string()}: bad table name {name!r}")
    return str(name)


def _as_arrow(obj: Any, asset: str) -> pa.Table:
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pd.DataFrame):
        return pa.Table.from_pandas(obj, preserve_index=False)
    raise TypeError(
        f"asset {asset}: the DuckDB IO manager takes a pyarrow Table or pandas "
        f"DataFrame, got {type(obj).__name__}"
    )


def single_partition(context: dg.OutputContext | dg.InputContext) -> str | None:
    """The one partition a step writes (a UI backfill passes it as a one-key range)."""
    if not context.has_asset_partitions:
        return None
    keys = list(context.asset_partition_keys)
    if len(keys) != 1:
        raise dg.Failure(
            f"{context.asset_key.to_user_string()}: a step writes one partition, this one was "
            f"given {len(keys)} ({keys[:3]}...); backfill with one partition per run"
        )
    return keys[0]


def column_schema(table: pa.Table, defined: dg.TableSchema | None = None) -> dg.TableSchema:
    """The table's columns and types, with the descriptions the asset defines."""
    docs = {c.name: c.description for c in (defined.columns if defined else [])}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(f.name, str(f.type), description=docs.get(f.name)) for f in table.schema
        ]
    )


def add_missing_columns(connection, table: str, source: str) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for every column of ``source`` that ``table`` lacks."""
    have = {
        r[0] for r in connection.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()
    }
    added = []
    for column, kind in connection.execute(
        f"SELECT column_name, column_type FROM (DESCRIBE {source})"
    ).fetchall():
        if column not in have:
            connection.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {kind}')
            added.append(column)
    return added


def write_table(
    db: BiocapDuckDB, name: str, table: pa.Table, partitions: list[str] | None = None
) -> None:
    """Replace table ``name`` (or only the rows of ``partitions``) in one transaction.

    A partitioned table written by an earlier release gains the columns it lacks (NULL for
    its old rows), so a new column never fails the write. With DuckLake, a commit that
    lost a race with another run's is retried whole.
    """

    def write() -> None:
        with db.get_connection() as connection:
            connection.register("incoming", table)
            connection.execute("BEGIN TRANSACTION")
            try:
                if partitions is None:
                    connection.execute(
                        f"CREATE OR REPLACE TABLE main.{name} AS SELECT * FROM incoming"
                    )
                else:
                    connection.execute(
                        f"CREATE TABLE IF NOT EXISTS main.{name} AS SELECT * FROM incoming LIMIT 0"
                    )
                    add_missing_columns(connection, f"main.{name}", "incoming")
                    connection.execute(
                        f"DELETE FROM main.{name} WHERE {PARTITION_COLUMN} IN "
                        "(SELECT unnest(?::VARCHAR[]))",
                        [partitions],
                    )
                    connection.execute(f"INSERT INTO main.{name} BY NAME SELECT * FROM incoming")
                connection.execute("COMMIT")
            except Exception:
                # a failed COMMIT has already ended the transaction: keep its error
                with contextlib.suppress(duckdb.TransactionException):
                    connection.execute("ROLLBACK")
                raise
            finally:
                connection.unregister("incoming")

    retry_on_conflict(write)


def _with_partitions(context: dg.OutputContext, table: pa.Table) -> tuple[pa.Table, list[str]]:
    """The table with its partition column, and the partitions it replaces. One partition:
    the column is added. Several (a multi-partition backfill run): the asset gives each
    row its partition, and every row must belong to the run's partitions."""
    keys = list(context.asset_partition_keys)
    if len(keys) == 1 and PARTITION_COLUMN not in table.column_names:
        column = pa.array([keys[0]] * table.num_rows, pa.string())
        return table.append_column(PARTITION_COLUMN, column), keys
    if PARTITION_COLUMN not in table.column_names:
        raise dg.Failure(
            f"{context.asset_key.to_user_string()}: a run of {len(keys)} partitions must give "
            f"each row its partition in a {PARTITION_COLUMN!r} column"
        )
    stray = set(table[PARTITION_COLUMN].to_pylist()) - set(keys)
    if stray:
        raise dg.Failure(
            f"{context.asset_key.to_user_string()}: rows of partitions {sorted(stray)[:3]} "
            f"outside this run's {keys[0]}...{keys[-1]}"
        )
    return table, keys


class DuckDBTableIOManager(dg.ConfigurableIOManager):
    duckdb: BiocapDuckDB
    storage: StorageResource

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        asset = context.asset_key.to_user_string()
        table = _as_arrow(obj, asset)
        name = _table_name(context)
        partitions = None
        if context.has_asset_partitions:
            table, partitions = _with_partitions(context, table)

        write_table(self.duckdb, name, table, partitions)

        if partitions is None:
            snapshot = self.storage.write_bytes(
                "tables", f"{name}.parquet", data=parquet_bytes(table, "zstd")
            )
        else:
            column = table[PARTITION_COLUMN]
            for key in partitions:
                rows = table.filter(pc.equal(column, key))
                snapshot = self.storage.write_bytes(
                    "tables", name, f"{key}.parquet", data=parquet_bytes(rows, "zstd")
                )
        context.add_output_metadata(
            {
                "table": f"main.{name}",
                "dagster/row_count": table.num_rows,
                "dagster/column_schema": column_schema(
                    table, (context.definition_metadata or {}).get("dagster/column_schema")
                ),
                "catalog": self.duckdb.label,
                "parquet_snapshot": dg.MetadataValue.path(str(snapshot)),
            }
        )

    def load_input(self, context: dg.InputContext) -> pa.Table:
        name = _table_name(context)
        with self.duckdb.get_connection() as connection:
            if not table_exists(connection, name):
                raise dg.Failure(
                    f"table main.{name} does not exist yet: materialize "
                    f"{context.asset_key.to_user_string()} first"
                )
            if context.has_asset_partitions:
                keys = list(context.asset_partition_keys)
                return connection.sql(
                    f"SELECT * FROM main.{name} WHERE {PARTITION_COLUMN} IN "
                    f"(SELECT unnest(?::VARCHAR[]))",
                    params=[keys],
                ).to_arrow_table()
            return connection.sql(f"SELECT * FROM main.{name}").to_arrow_table()


class ArtifactIOManager(dg.ConfigurableIOManager):
    storage: StorageResource

    def _base(self, context: dg.OutputContext | dg.InputContext) -> list[str]:
        key = context.asset_key.path
        leaf = single_partition(context) or "data"
        return ["assets", *key, leaf]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        *folder, leaf = self._base(context)
        if isinstance(obj, pa.Table | pd.DataFrame):
            table = _as_arrow(obj, context.asset_key.to_user_string())
            data, ext = parquet_bytes(table, "zstd"), "parquet"
            context.add_output_metadata({"dagster/row_count": table.num_rows})
        elif isinstance(obj, dict | list):
            data, ext = json.dumps(obj, indent=1, sort_keys=True, default=str).encode(), "json"
        elif isinstance(obj, bytes):
            data, ext = obj, "bin"
        else:
            raise TypeError(
                f"asset {context.asset_key.to_user_string()}: the artifact IO "
                f"manager stores tables, dicts, lists or bytes, not "
                f"{type(obj).__name__}"
            )
        for stale in self.storage.path(*folder).glob(f"{leaf}.*"):
            if stale.suffix != f".{ext}":
                stale.unlink()
        path = self.storage.write_bytes(*folder, f"{leaf}.{ext}", data=data)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path)), "bytes": len(data)})

    def load_input(self, context: dg.InputContext) -> UPath:
        *folder, leaf = self._base(context)
        found = sorted(
            p
            for p in self.storage.path(*folder).glob(f"{leaf}.*")
            if p.suffix in _ARTIFACT_SUFFIXES
        )
        if not found:
            raise dg.Failure(
                f"no stored artifact for {context.asset_key.to_user_string()} "
                f"under {self.storage.path(*folder)}: materialize it first"
            )
        return found[0]
