"""Benchmark the shard rewrite against a raw copy of the same tar.

    python bench/captions.py --samples 2000

Writes a synthetic shard in the TreeOfLife layout (a JPEG and the ten text
members per sample; smoothed-noise images of ``--image-size`` px), then in the
same run, each in a fresh process (for its peak RSS) and the median of
``--repeat``: a raw copy of the file (``shutil.copyfileobj``), and the rewrite
with the no-op captioner (everything but generation: streaming, grouping, image
checks, tar writing) for each image check: ``none``, ``structure``, ``decode``
in one process and ``decode-pool`` over one process per CPU. Memory must stay
flat in the shard size: the decode rewrite also runs on a shard four times
larger.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from biocap_assets.shards.tarwrite import DeterministicTarWriter  # noqa: E402
from biocap_assets.shards.texts import Taxon, sample_texts  # noqa: E402


def write_shard(path: Path, samples: int, size: int = 256) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    taxon = Taxon(
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Corvidae",
        "Corvus",
        "corax",
        "common raven",
    )
    tiles = []
    for _ in range(16):  # a few distinct images, reused: encoding is not what we measure
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        smooth = Image.fromarray(pixels).resize((size // 8, size // 8)).resize((size, size))
        buffer = io.BytesIO()
        smooth.save(buffer, format="JPEG", quality=90)
        tiles.append(buffer.getvalue())
    with path.open("wb") as f, DeterministicTarWriter(f) as writer:
        for i in range(samples):
            writer.write(
                {
                    "__key__": f"{random.Random(i).getrandbits(64):016x}",
                    "jpg": tiles[i % len(tiles)],
                    **sample_texts(taxon),
                }
            )


METHODS = ("copy", "none", "structure", "decode", "decode-pool")


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over from the
    parent that forked the process (here one that had imported torch)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def child(method: str, shard: str, out: str) -> dict:
    # imported before the clock starts: a real shard is gigabytes, its import is not
    from biocap_assets.inference.tasks import NoopCaptioner
    from biocap_assets.shards.images import default_workers
    from biocap_assets.shards.rewrite import rewrite_shard

    started = time.perf_counter()
    if method == "copy":
        with open(shard, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        samples = None
    else:
        mode = "decode" if method.startswith("decode") else method
        workers = default_workers() if method == "decode-pool" else 1
        with open(shard, "rb") as src, open(out, "wb") as dst:
            samples = rewrite_shard(
                src,
                dst,
                NoopCaptioner(),
                batch_size=256,
                check_images=mode,
                image_workers=workers,
            ).samples
    seconds = time.perf_counter() - started
    return {
        "method": method,
        "seconds": seconds,
        "samples": samples,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure(method: str, shard: Path, out: Path) -> dict:
    # a fresh output file each time: overwriting the last run's output would add the
    # truncation of a file as large as the shard to both sides (about 0.14 s for 370 MB
    # here, more than the copy itself), and a real rewrite writes a new temporary file
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, __file__, "--child", method, str(shard), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    small, large = args.out / "bench-small.tar", args.out / "bench-large.tar"
    write_shard(small, args.samples, args.image_size)
    write_shard(large, args.samples * 4, args.image_size)
    mb = small.stat().st_size / 1e6
    print(f"shard: {args.samples} samples, {mb:.1f} MB ({mb * 1e3 / args.samples:.1f} kB/sample)")
    runs = {}
    for method in METHODS:
        tries = [measure(method, small, args.out / f"{method}.tar") for _ in range(args.repeat)]
        runs[method] = sorted(tries, key=lambda r: r["seconds"])[len(tries) // 2]
    copy = runs["copy"]["seconds"]
    print("| method | MB/s | samples/s | ratio to raw copy | peak RSS (MB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for method, run in runs.items():
        rate = f"{run['samples'] / run['seconds']:.0f}" if run["samples"] else ""
        print(
            f"| {method} | {mb / run['seconds']:.0f} | {rate} | {copy / run['seconds']:.2f} | "
            f"{run['peak_rss_mb']:.0f} |"
        )
    large_run = measure("decode", large, args.out / "decode-large.tar")
    print(
        f"\npeak RSS of decode, 4x larger shard: {large_run['peak_rss_mb']:.0f} MB vs "
        f"{runs['decode']['peak_rss_mb']:.0f} MB (flat when about equal)"
    )
    print("targets: none >= 0.5, structure >= 0.3 of the raw copy")


if __name__ == "__main__":
    main()
