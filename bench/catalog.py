"""Benchmark the catalog under concurrent writers: partition commits per second.

    python bench/catalog.py --writers 4 --commits 40 --rows 2000

Each writer is its own process (as every run pod is) committing ``--commits`` shard
partitions of ``--rows`` rows through the IO manager's ``write_table``. In the same run:
the DuckDB file with one writer (the baseline), the DuckDB file with N writers (they
take turns on its lock), DuckLake on a local PostgreSQL with one writer and with N.
Prints commits/s and each figure's ratio to the baseline. Needs Debian's postgresql.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402

from biocap_assets.resources.duckdb import BiocapDuckDB  # noqa: E402
from biocap_assets.resources.io_managers import PARTITION_COLUMN, write_table  # noqa: E402


def writer(config: dict, writer_id: int, commits: int, rows: int) -> None:
    db = BiocapDuckDB(**config)
    for i in range(commits):
        key = f"w{writer_id}-{i:05d}"
        table = pa.table(
            {
                "sample": list(range(rows)),
                "caption_words": [float(r % 17) for r in range(rows)],
                PARTITION_COLUMN: [key] * rows,
            }
        )
        write_table(db, "shard_stats", table, [key])


def run(config: dict, writers: int, commits: int, rows: int) -> float:
    """Commits per second over all writers, wall clock from first start to last exit."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--child",
                json.dumps(config),
                str(w),
                str(commits),
                str(rows),
            ]
        )
        for w in range(writers)
    ]
    for p in processes:
        if p.wait() != 0:
            raise SystemExit("a writer failed")
    elapsed = time.perf_counter() - started
    db = BiocapDuckDB(**config)
    with db.get_connection() as connection:
        found = connection.execute(
            f"SELECT count(DISTINCT {PARTITION_COLUMN}), count(*) FROM main.shard_stats"
        ).fetchall()[0]
    assert found == (writers * commits, writers * commits * rows), found
    return writers * commits / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config, writer_id, commits, rows = args.child
        writer(json.loads(config), int(writer_id), int(commits), int(rows))
        return

    from biocap_assets_tests.postgres_server import postgres_server

    results = {}
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg:
        for writers in (1, args.writers):
            file_config = {"database": str(Path(tmp) / f"file-{writers}.duckdb")}
            results[f"duckdb file, {writers} writer(s)"] = run(
                file_config, writers, args.commits, args.rows
            )
            lake_config = {
                "database": ":memory:",
                "ducklake_catalog": pg.ducklake_catalog(pg.create_database(f"lake{writers}")),
                "ducklake_data_path": str(Path(tmp) / f"lake-{writers}"),
            }
            results[f"ducklake/postgres, {writers} writer(s)"] = run(
                lake_config, writers, args.commits, args.rows
            )
    baseline = results["duckdb file, 1 writer(s)"]
    print(f"{args.commits} commits of {args.rows} rows per writer")
    for name, rate in results.items():
        print(f"{name:32s} {rate:7.1f} commits/s  {rate / baseline:5.2f}x the 1-writer file")


if __name__ == "__main__":
    main()
