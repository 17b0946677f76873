"""The catalog under concurrent writers: several processes materialize shard partitions at once.

Both catalogs are tested with the same writers: the embedded DuckDB file (one writer at
a time; the others wait for its lock) and DuckLake with its catalog in a real PostgreSQL
server (production: every run pod writes at once).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from biocap_assets_tests.catalog_writer import KEYS, ROWS_PER_PARTITION, catalog_from_env

WRITERS = 4


def _catalog_env(kind: str, tmp_path: Path, postgres_fixture) -> dict[str, str]:
    env = {"BIOCAP_STORAGE_URL": (tmp_path / "storage").as_uri()}
    if kind == "duckdb-file":
        env["BIOCAP_DUCKDB_PATH"] = str(tmp_path / "biocap.duckdb")
    else:
        server = postgres_fixture()
        dbname = server.create_database(f"lake_{tmp_path.name[-12:].lower()}")
        env["BIOCAP_DUCKLAKE_CATALOG"] = server.ducklake_catalog(dbname)
        env["BIOCAP_DUCKLAKE_DATA_PATH"] = str(tmp_path / "lake")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["duckdb-file", "ducklake-postgres"])
def test_concurrent_writers_lose_nothing(kind, tmp_path, request):
    env = _catalog_env(kind, tmp_path, lambda: request.getfixturevalue("postgres"))
    # every writer takes every WRITERS-th key, and all of them also rewrite the first two
    # keys, so the same partitions are replaced concurrently too
    assignments = [KEYS[i::WRITERS] + KEYS[:2] for i in range(WRITERS)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "biocap_assets_tests.catalog_writer", f"w{i}", *keys],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i, keys in enumerate(assignments)
    ]
    outputs = [p.communicate(timeout=540)[0].decode(errors="replace") for p in processes]
    for i, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"writer w{i} failed:\n{output[-3000:]}"

    with catalog_from_env(env).get_connection() as connection:
        rows = connection.execute(
            "SELECT partition_key, count(*), count(DISTINCT writer), min(sample), max(sample) "
            "FROM main.shard_stats GROUP BY ALL ORDER BY partition_key"
        ).fetchall()
    # each partition once, whole, from one writer: nothing lost, nothing doubled
    assert [r[0] for r in rows] == KEYS
    assert all(r[1:] == (ROWS_PER_PARTITION, 1, 0, ROWS_PER_PARTITION - 1) for r in rows), rows


@pytest.mark.slow
def test_ducklake_tables_are_parquet_under_the_data_path(postgres, tmp_path):
    env = _catalog_env("ducklake-postgres", tmp_path, lambda: postgres)
    subprocess.run(
        [sys.executable, "-m", "biocap_assets_tests.catalog_writer", "w0", *KEYS[:3]],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    files = sorted(Path(env["BIOCAP_DUCKLAKE_DATA_PATH"]).rglob("*.parquet"))
    assert files, "DuckLake wrote no Parquet file"
    total = duckdb.sql(f"SELECT count(*) FROM read_parquet({[str(f) for f in files]})").fetchall()[
        0
    ][0]
    # the data files hold what the catalog says (deletes are separate delete files)
    assert total >= 3 * ROWS_PER_PARTITION


def test_a_commit_that_lost_a_race_is_retried_and_other_errors_are_not(caplog):
    """retry_on_conflict: DuckLake's 'Transaction conflict' is retried with backoff until
    the write goes through; any other error, and the last conflict, reach the caller."""
    from biocap_assets.resources.duckdb import retry_on_conflict

    calls = []

    def write(failures: int, error: str):
        def attempt():
            calls.append(error)
            if len(calls) <= failures:
                raise duckdb.TransactionException(error)
            return "committed"

        return attempt

    conflict = "Transaction conflict: another transaction has deleted from it"
    assert retry_on_conflict(write(2, conflict), pause=0.001) == "committed"
    assert len(calls) == 3 and "lost a race (attempt 2)" in caplog.text
    calls.clear()
    with pytest.raises(duckdb.TransactionException, match="disk full"):
        retry_on_conflict(write(5, "disk full"), pause=0.001)
    assert len(calls) == 1, "not a conflict: not retried"
    calls.clear()
    with pytest.raises(duckdb.TransactionException, match="conflict"):
        retry_on_conflict(write(99, conflict), attempts=4, pause=0.001)
    assert len(calls) == 4
