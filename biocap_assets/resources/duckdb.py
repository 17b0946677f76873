"""DuckDB: the tables of the platform, one file by default.

DuckDB allows one writer process per file, so writes happen in asset steps (the
connection retries while another step holds the lock); workers write Parquet to
object storage instead. Remote storage is read through a registered fsspec
filesystem, because DuckDB's own httpfs extension cannot always be downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import duckdb
import fsspec
from dagster_duckdb import DuckDBResource
from fsspec.implementations.http import HTTPFileSystem


class _HTTPFileSystem(HTTPFileSystem):
    """fsspec's HTTP filesystem plus the ``modified`` DuckDB asks every filesystem for."""

    def modified(self, path: str) -> datetime:
        return datetime.fromtimestamp(0, tz=UTC)


def register_filesystem(connection: duckdb.DuckDBPyConnection, url: str) -> None:
    """Let ``connection`` read ``url``'s scheme through fsspec (no-op for local paths)."""
    protocol = fsspec.utils.get_protocol(url)
    if protocol in ("file", "local"):
        return
    if protocol in ("http", "https"):
        connection.register_filesystem(_HTTPFileSystem())
    else:
        connection.register_filesystem(fsspec.filesystem(protocol))


class BiocapDuckDB(DuckDBResource):
    """DuckDB file resource that creates its folder and reads object storage."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.database)), exist_ok=True)
        with super().get_connection() as connection:
            yield connection


def table_exists(connection: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchall()[0]
    return bool(row and row[0])
