"""Worker: evaluate a model on a suite (``python -m biocap_assets.workers.evaluate``).

``--checkpoint`` is an export folder (``checkpoints/<run>/export``, loaded through stock
open_clip) or an epoch checkpoint. Writes one Parquet of metric rows (task, dataset,
metric, value, chance, n, head). ``--head caption`` scores retrieval and INQUIRE with the
caption head instead of the reference's taxonomic one.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import pyarrow as pa

from biocap_assets.common.files import write_parquet
from biocap_assets.evaluation.datasets import DatasetSpec, load_suite
from biocap_assets.evaluation.runner import EvalOptions, evaluate
from biocap_assets.workers.runtime import run_main, worker_context


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint")
    parser.add_argument("--suite", help="a suite YAML file")
    parser.add_argument("--output", help="Parquet of metric rows")
    parser.add_argument("--head", choices=("taxonomic", "caption"))
    args, _ = parser.parse_known_args(argv)
    cli = {k: v for k, v in vars(args).items() if v and k != "head"}
    if args.head:
        cli["options"] = {"head": args.head}
    with worker_context(cli) as ctx:
        extras = ctx.extras
        if extras.get("specs"):
            specs = [DatasetSpec(**s) for s in extras["specs"]]
        elif extras.get("suite"):
            from pathlib import Path

            specs = load_suite(Path(extras["suite"]))
        else:
            parser.error("a suite (--suite) or the 'specs' extra is required")
        options = EvalOptions(**(extras.get("options") or {}))
        evaluation = evaluate(extras["checkpoint"], specs, ctx.log.info, options=options)
        rows = evaluation.rows
        table = pa.Table.from_pylist([asdict(r) for r in rows])
        write_parquet(extras["output"], table)
        ctx.report_result(
            {
                "rows": len(rows),
                "datasets": len(specs),
                "not_evaluated": evaluation.not_evaluated,
                "output": extras["output"],
                "headline": json.loads(
                    json.dumps([asdict(r) for r in rows if r.metric != "missing_images"][:50])
                ),
            }
        )


if __name__ == "__main__":
    run_main(main)
