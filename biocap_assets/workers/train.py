"""Worker: train BioCAP (``torchrun --nproc_per_node=N -m biocap_assets.workers.train``).

Every rank runs this module; only rank 0 speaks Dagster Pipes (logs, results),
the others log to stderr. Parameters: ``config`` (TrainConfig fields), ``job``
(train/val shard URLs, checkpoint folder, data version, sample count).
"""

from __future__ import annotations

import argparse
import json
import os

from biocap_assets.training.config import PRESETS, TrainConfig
from biocap_assets.training.loop import TrainJob, train
from biocap_assets.training.pretrained import check
from biocap_assets.workers.runtime import run_main, worker_context


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    parser.add_argument(
        "--config", type=json.loads, default={}, help="TrainConfig fields as JSON, over the preset"
    )
    parser.add_argument("--train", nargs="*", default=[], help="training shard URLs")
    parser.add_argument("--val", nargs="*", default=[], help="validation shard URLs")
    parser.add_argument("--out", help="checkpoint folder (checkpoints/<run>)")
    parser.add_argument("--train-samples", dest="train_samples", type=int, default=0)
    parser.add_argument(
        "--rank-report",
        dest="rank_report",
        default="",
        help="folder where each rank writes what it saw (debugging)",
    )
    args, _ = parser.parse_known_args(argv)
    cli = {
        "preset": args.preset,
        "config": args.config,
        "job": {
            "train_urls": args.train,
            "val_urls": args.val,
            "out_dir": args.out,
            "train_samples": args.train_samples,
            "rank_report": args.rank_report,
        },
    }
    rank0 = os.environ.get("RANK", "0") == "0"
    with worker_context(cli, use_pipes=rank0) as ctx:
        base = PRESETS[ctx.extras.get("preset", "demo")].as_dict()
        config = TrainConfig.from_dict({**base, **(ctx.extras.get("config") or {})})
        job = TrainJob(**ctx.extras["job"])
        if not job.train_urls or not job.out_dir:
            parser.error("training shards and --out (or the 'job' extra) are required")
        # Where the step could not see this machine's files or cache, say it here, first.
        check(config.model, config.pretrained)
        result = train(config, job, ctx.log.info)
        if rank0:
            ctx.report_result(result)


if __name__ == "__main__":
    run_main(main)
