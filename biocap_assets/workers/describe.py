"""Worker: filter wiki texts down to visual descriptions (``python -m ...workers.describe``).

Reads the wiki rows to process (Parquet), optionally one hash bucket of them
(``bucket``/``buckets``, so several GPU workers can share the ~450k texts),
and writes the results as one Parquet file.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib

import pyarrow as pa

from biocap_assets.common.files import (
    read_parquet,
    write_parquet,
)
from biocap_assets.inference.factory import InferenceConfig, make_backend
from biocap_assets.inference.tasks import DescriptionInput, filter_with_model, filter_with_rules
from biocap_assets.progress import ProgressLog
from biocap_assets.workers.runtime import run_main, worker_context

RESULT_SCHEMA = pa.schema(
    [
        ("taxon_id", pa.string()),
        ("description", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("backend", pa.string()),
        ("model", pa.string()),
    ]
)


def in_bucket(taxon_id: str, bucket: int, buckets: int) -> bool:
    return buckets <= 1 or zlib.crc32(taxon_id.encode()) % buckets == bucket


def run(extras: dict, log) -> dict:
    config = InferenceConfig.from_dict(extras.get("inference") or {})
    bucket, buckets = int(extras.get("bucket", 0)), int(extras.get("buckets", 1))
    rows = read_parquet(extras["input"]).to_pylist()
    items = [
        DescriptionInput(r["taxon_id"], r["binomial"], r.get("common_name"), r["text"])
        for r in rows
        if in_bucket(r["taxon_id"], bucket, buckets)
    ]
    log.info(f"describe: {len(items)} texts (bucket {bucket}/{buckets}) with {config.backend}")
    started = time.perf_counter()
    if config.backend == "cpu":
        results = filter_with_rules(items)
    else:
        # chunks large enough to keep the engine's batches full, small enough for progress
        backend, chunk = make_backend(config), int(extras.get("chunk_size", 1024))
        progress = ProgressLog(log.info, f"describe bucket {bucket}", len(items), "texts")
        results = []
        for start in range(0, len(items), chunk):
            results += filter_with_model(items[start : start + chunk], backend, seed=config.seed)
            progress(len(results))
    table = pa.Table.from_pylist([r.__dict__ for r in results], schema=RESULT_SCHEMA)
    write_parquet(extras["output"], table)
    statuses = table["status"].to_pylist()
    return {
        "items": len(items),
        "ok": statuses.count("ok"),
        "empty": statuses.count("empty"),
        "error": statuses.count("error"),
        "seconds": round(time.perf_counter() - started, 2),
        "backend": results[0].backend if results else config.backend,
        "model": results[0].model if results else config.model,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input")
    parser.add_argument("--output")
    parser.add_argument(
        "--inference",
        type=json.loads,
        default={},
        help='backend config as JSON, e.g. {"backend": "cpu"}',
    )
    args, _ = parser.parse_known_args(argv)
    cli = {k: v for k, v in vars(args).items() if v}
    with worker_context(cli) as ctx:
        ctx.require(parser, "input", "output")
        ctx.report_result(run(ctx.extras, ctx.log))


if __name__ == "__main__":
    run_main(main)
