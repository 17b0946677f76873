"""DuckDB: the tables of the platform.

Two catalogs, chosen by configuration:

- **one DuckDB file** (the embedded default, ``BIOCAP_DUCKDB_PATH``). DuckDB allows one
  writer process per file; a step that finds it locked retries while the other finishes.
- **DuckLake** (``BIOCAP_DUCKLAKE_CATALOG``, production): the catalog in PostgreSQL (or
  a DuckDB/SQLite file for one machine), the data as Parquet files under
  ``BIOCAP_DUCKLAKE_DATA_PATH`` (default ``$BIOCAP_STORAGE_URL/lake/``). Every run pod
  writes through its own connection; DuckLake commits are transactions in PostgreSQL,
  so concurrent runs materializing different shard partitions all land. The extensions
  load from their PyPI packages (no download at run time); S3 goes through httpfs with
  the ``AWS_*`` variables.

Workers never open the catalog: they read Parquet snapshots. Remote files that plain
DuckDB connections read (a catalog CSV on S3 or HTTP) go through a registered fsspec
filesystem, because DuckDB cannot download its own extensions here.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar
from urllib.parse import urlparse

import duckdb
import fsspec
from dagster_duckdb import DuckDBResource
from pydantic import Field
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from biocap_assets.common.secrets import redact

LAKE = "lake"
T = TypeVar("T")


def extension_path(name: str) -> str:
    """The extension file shipped by the ``duckdb-extension-<name>`` package for this DuckDB."""
    package = f"duckdb_extension_{name}"
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"the DuckDB extension {name!r} is not installed: pip install "
            f"duckdb-extension-{name.replace('_', '-')}=={duckdb.__version__}"
        ) from exc
    path = root / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise RuntimeError(
            f"{package} has no build for DuckDB {duckdb.__version__} (looked for {path}); "
            "install the release matching duckdb"
        )
    return str(path)


def s3_secret_sql(env: Mapping[str, str]) -> str:
    """A DuckDB S3 secret from the standard ``AWS_*`` variables (endpoint for S3-compatibles)."""
    key, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if not key or not secret:
        raise RuntimeError("DuckLake data on S3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    parts = [f"TYPE s3, KEY_ID {_quote(key)}, SECRET {_quote(secret)}, REGION {_quote(region)}"]
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint)
        parts.append(
            f"ENDPOINT {_quote(parsed.netloc or parsed.path)}, URL_STYLE 'path', "
            f"USE_SSL {str(parsed.scheme == 'https').lower()}"
        )
    return f"CREATE OR REPLACE SECRET biocap_s3 ({', '.join(parts)})"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def is_conflict(exc: BaseException) -> bool:
    """A commit that lost a race with another writer (retrying it is safe)."""
    return isinstance(exc, duckdb.Error) and "conflict" in str(exc).lower()


def _log_lost_race(state) -> None:
    logging.getLogger("biocap.catalog").warning(
        f"catalog commit lost a race (attempt {state.attempt_number}), retrying: "
        f"{state.outcome.exception()}"
    )


def retry_on_conflict(write: Callable[[], T], attempts: int = 8, pause: float = 0.1) -> T:
    """Run ``write`` (one whole transaction) again when a concurrent commit won the race."""
    return Retrying(
        retry=retry_if_exception(is_conflict),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=pause),  # pause, 2 x pause, 4 x pause, ...
        before_sleep=_log_lost_race,
        reraise=True,
    )(write)


def _is_lake_initialising(exc: BaseException) -> bool:
    # the first runs of a new lake race to create its metadata tables: the losers find
    # them made on the next try
    return isinstance(exc, duckdb.Error) and "initialize ducklake" in str(exc).lower()


class BiocapDuckDB(DuckDBResource):
    """The catalog: one DuckDB file, or DuckLake when ``ducklake_catalog`` is set."""

    ducklake_catalog: str = Field(
        default="",
        description="DuckLake catalog, e.g. 'postgres:host=db dbname=lake user=biocap' or a "
        "file path; empty: the DuckDB file `database`",
    )
    ducklake_data_path: str = Field(
        default="", description="where DuckLake writes its Parquet files (a folder or s3:// URL)"
    )

    @property
    def label(self) -> str:
        if self.ducklake_catalog:
            return f"ducklake:{redact(self.ducklake_catalog)} data {self.ducklake_data_path}"
        return self.database

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.ducklake_catalog:
            with self._lake_connection() as connection:
                yield connection
            return
        if self.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.database)), exist_ok=True)
        with super().get_connection() as connection:
            yield connection

    @contextmanager
    def _lake_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on this process's attached lake (attaching costs ~0.6 s, a cursor ~0)."""
        key = (os.getpid(), self.ducklake_catalog, self.ducklake_data_path)
        with _LAKES_LOCK:
            base = _LAKES.get(key)
            if base is None:
                base = _LAKES[key] = attach_lake(self.ducklake_catalog, self.ducklake_data_path)
            cursor = base.cursor()
        try:
            cursor.execute(f"USE {LAKE}")
            yield cursor
        finally:
            cursor.close()


_LAKES: dict[tuple[int, str, str], duckdb.DuckDBPyConnection] = {}
_LAKES_LOCK = threading.Lock()


def attach_lake(catalog: str, data_path: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached: extensions from their packages, S3 secret."""
    if not data_path:
        raise RuntimeError("a DuckLake catalog needs a data path (BIOCAP_DUCKLAKE_DATA_PATH)")
    connection = duckdb.connect()
    try:
        connection.execute(f"LOAD '{extension_path('ducklake')}'")
        if catalog.startswith("postgres:"):
            connection.execute(f"LOAD '{extension_path('postgres_scanner')}'")
        if fsspec.utils.get_protocol(data_path) in ("s3", "s3a"):
            connection.execute(f"LOAD '{extension_path('httpfs')}'")
            connection.execute(s3_secret_sql(os.environ))
            data_path = "s3://" + data_path.split("://", 1)[1]
        elif "://" not in data_path:
            os.makedirs(data_path, exist_ok=True)
        attach = (
            f"ATTACH {_quote('ducklake:' + catalog)} AS {LAKE} "
            f"(DATA_PATH {_quote(data_path.rstrip('/') + '/')})"
        )
        try:
            Retrying(
                retry=retry_if_exception(_is_lake_initialising),
                stop=stop_after_attempt(6),
                wait=wait_exponential(multiplier=0.2),
                reraise=True,
            )(connection.execute, attach)
        except duckdb.Error as exc:
            # DuckDB's message carries the whole connection string: not its password
            raise RuntimeError(
                f"cannot attach the DuckLake catalog {redact(catalog)!r}: {redact(str(exc))}"
            ) from None
    except BaseException:
        connection.close()
        raise
    return connection


def table_exists(connection: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = "
        "current_database() AND table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchall()[0]
    return bool(row and row[0])
