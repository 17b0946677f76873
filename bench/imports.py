"""How long each worker and the Definitions take to import, in a fresh interpreter,
against a bare one.

Every partition run starts a worker process, so its import time is paid per shard; the
run process (and, with the multiprocess executor, the step process) imports the
Definitions. The baseline is ``python -c pass`` in the same run; the ratio is what to
compare.

    python bench/imports.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

WORKERS = ("caption", "describe", "wiki", "download", "evaluate", "train")
MODULES = (*(f"biocap_assets.workers.{w}" for w in WORKERS), "biocap_assets.definitions")


def seconds(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bare = seconds("pass", args.repeat)
    print(f"bare interpreter: {bare:.3f} s (median of {args.repeat})")
    print("| module | import (s) | minus bare (s) | ratio to bare | loads dagster | loads torch |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for module in MODULES:
        took = seconds(f"import {module}", args.repeat)
        loads = subprocess.run(
            [
                sys.executable,
                "-W",
                "ignore",
                "-c",
                f"import sys, {module}; print('dagster' in sys.modules, 'torch' in sys.modules)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        name = module.removeprefix("biocap_assets.").removeprefix("workers.")
        print(
            f"| {name} | {took:.3f} | {took - bare:.3f} | {took / bare:.1f}x | "
            f"{loads[0]} | {loads[1]} |"
        )


if __name__ == "__main__":
    main()
