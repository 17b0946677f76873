"""Worker: generate the demo world (``python -m biocap_assets.workers.demo_world --out DIR``)."""

from __future__ import annotations

import argparse
import time

from biocap_assets.demo.world import DEMO_SEED, DemoSizes, generate_demo_world
from biocap_assets.workers.runtime import run_main, worker_context


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", help="folder to build the world in")
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    parser.add_argument("--force", action="store_true", help="rebuild even if complete")
    args, _ = parser.parse_known_args(argv)
    with worker_context({"out": args.out, "seed": args.seed, "force": args.force}) as ctx:
        ctx.require(parser, "out")
        started = time.perf_counter()
        sizes = DemoSizes(**ctx.extras["sizes"]) if ctx.extras.get("sizes") else None
        world = generate_demo_world(
            ctx.extras["out"],
            seed=int(ctx.extras["seed"]),
            sizes=sizes,
            force=bool(ctx.extras.get("force")),
        )
        manifest = world.manifest
        ctx.log.info(f"demo world ready at {world.root}: {manifest['counts']}")
        ctx.report_result(
            {
                "root": str(world.root),
                "seed": manifest["seed"],
                "version": manifest["version"],
                "species": manifest["species"],
                "files": len(manifest["files"]),
                **manifest["counts"],
                "seconds": round(time.perf_counter() - started, 2),
            }
        )


if __name__ == "__main__":
    run_main(main)
