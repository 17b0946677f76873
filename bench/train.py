"""Benchmark the BioCAP training loop against ``open_clip_train.main`` on CPU.

    python bench/train.py --steps 40

Same tiny model (``biocap-tiny``), same demo shards (captioned with the CPU
template captioner; a ``txt`` member added for open_clip_train, which reads
captions from it), same batch size, one process each, run side by side:

- training: samples/s per device as each loop reports it over its logging windows
  (open_clip_train's "/s/gpu"; ours "samples/s/device"), the first window dropped;
- data loading only: batches from each loader, no model.

Ours tokenises all six texts of every sample (one is used per step); open_clip_train
tokenises one caption. Also: ``--gpu`` measures ViT-B-16 bf16 training throughput on
an accelerator with synthetic batches (pairs/s/GPU and the share of peak FLOP/s).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OPENCLIP_RUNNER = """
import sys
from biocap_assets.training.model import register_model_configs
register_model_configs()
from open_clip_train.main import main
main(sys.argv[1:])
"""
LOADER_RUNNER = """
import sys, time, json
from biocap_assets.training.model import register_model_configs, create_model
register_model_configs()
mode, batches, batch_size, *urls = sys.argv[1:]
batches, batch_size = int(batches), int(batch_size)
model, preprocess, _, tokenizer = create_model("biocap-tiny")
if mode == "ours":
    from biocap_assets.training.data import loader, train_pipeline
    it = iter(loader(train_pipeline(urls, preprocess, tokenizer, batch_size, 0, 500), 0))
else:
    from open_clip_train.data import get_wds_dataset
    from open_clip_train.params import parse_args
    args = parse_args(["--train-data", "::".join(urls), "--train-num-samples", "100000",
                       "--dataset-type", "webdataset", "--batch-size", str(batch_size),
                       "--workers", "0", "--dataset-resampled", "--model", "biocap-tiny"])
    args.world_size, args.rank = 1, 0
    it = iter(get_wds_dataset(args, preprocess, True, tokenizer=tokenizer).dataloader)
next(it)
start = time.perf_counter()
for _ in range(batches):
    next(it)
print(json.dumps({"samples_per_second": batches * batch_size / (time.perf_counter() - start)}))
"""


def prepare_shards(folder: Path) -> list[str]:
    from biocap_assets.demo.species import SPECIES
    from biocap_assets.demo.wiki import visual_paragraphs
    from biocap_assets.demo.world import generate_demo_world
    from biocap_assets.inference.tasks import TemplateCaptionerAdapter
    from biocap_assets.shards.rewrite import iter_samples, rewrite_shard
    from biocap_assets.shards.tarstream import END_OF_ARCHIVE, member_bytes

    world = generate_demo_world(folder / "demo")
    texts = {s.taxon.binomial: " ".join(visual_paragraphs(s)) for s in SPECIES}
    urls = []
    for shard in world.train_shards:
        captioned = folder / f"captioned-{shard.name}"
        with shard.open("rb") as src, captioned.open("wb") as dst:
            rewrite_shard(
                src,
                dst,
                TemplateCaptionerAdapter(),
                describe=lambda r: texts.get(f"{r.get('genus', '')} {r.get('species', '')}"),
            )
        final = folder / shard.name
        with captioned.open("rb") as src, final.open("wb") as dst:
            for sample in iter_samples(src):
                for member in sample.members:
                    dst.write(member.raw.raw)
                caption = sample.get("caption.txt")
                if caption:
                    last = sample.members[-1].raw
                    dst.write(member_bytes(f"{sample.key}.txt", caption, last.mtime))
            dst.write(END_OF_ARCHIVE)
        urls.append(str(final))
    return urls


def windows(pattern: str, text: str) -> list[float]:
    values = [float(v) for v in re.findall(pattern, text)]
    return values[1:] if len(values) > 1 else values


def run_ours(urls: list[str], out: Path, steps: int, batch: int) -> dict:
    config = {
        "epochs": 1,
        "samples_per_epoch": steps * batch,
        "batch_size": batch,
        "log_every": 5,
        "warmup": 5,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "biocap_assets.workers.train",
            "--train",
            *urls,
            "--out",
            str(out),
            "--config",
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    rates = windows(r"([\d.]+) samples/s/device", done.stderr + done.stdout)
    return {"samples_per_second": statistics.median(rates), "windows": len(rates)}


def run_open_clip(urls: list[str], logs: Path, steps: int, batch: int) -> dict:
    argv = [
        "--train-data",
        "::".join(urls),
        "--train-num-samples",
        str(steps * batch),
        "--dataset-type",
        "webdataset",
        "--dataset-resampled",
        "--batch-size",
        str(batch),
        "--model",
        "biocap-tiny",
        "--epochs",
        "1",
        "--workers",
        "0",
        "--lr",
        "1e-3",
        "--warmup",
        "5",
        "--logs",
        str(logs),
        "--log-every-n-steps",
        "5",
        "--save-frequency",
        "0",
        "--precision",
        "fp32",
        "--device",
        "cpu",
    ]
    done = subprocess.run(
        [sys.executable, "-c", OPENCLIP_RUNNER, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    text = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"open_clip_train failed:\n{text[-3000:]}")
    rates = windows(r"([\d.]+)/s/gpu", text)
    return {"samples_per_second": statistics.median(rates), "windows": len(rates)}


def run_loader(mode: str, urls: list[str], batches: int, batch: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", LOADER_RUNNER, mode, str(batches), str(batch), *urls],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["samples_per_second"]


def gpu_throughput(batch: int = 256, steps: int = 20) -> None:
    """ViT-B-16 bf16 training steps on synthetic batches; FLOPs counted by PyTorch."""
    import torch
    from open_clip import ClipLoss
    from torch.utils.flop_counter import FlopCounterMode

    from biocap_assets.training.model import create_model

    model, *_ = create_model("ViT-B-16", device="cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = ClipLoss()

    def step(images, tokens, projector):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(images, tokens, projector)
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        loss.backward()

    small = 8
    with FlopCounterMode(display=False) as counter:
        step(
            torch.randn(small, 3, 224, 224, device="cuda"),
            torch.randint(0, 49408, (small, 77), device="cuda"),
            "taxonomic",
        )
    flops_per_pair = counter.get_total_flops() / small
    optimizer.zero_grad(set_to_none=True)

    images = torch.randn(batch, 3, 224, 224, device="cuda")
    tokens = torch.randint(0, 49408, (batch, 77), device="cuda")
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            start = time.perf_counter()
        step(images, tokens, "caption" if i % 2 else "taxonomic")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    pairs = batch * steps / seconds
    achieved = pairs * flops_per_pair
    peak = 989e12  # dense bf16 of the H100/H200 SXM (vendor datasheet)
    print(
        f"{torch.cuda.get_device_name()}: ViT-B-16 bf16, batch {batch}, fp32 master "
        f"weights, no grad checkpointing: {pairs:.0f} pairs/s/GPU; "
        f"{flops_per_pair / 1e9:.1f} GFLOP per pair (forward+backward, counted); "
        f"{achieved / 1e12:.0f} TFLOP/s = {100 * achieved / peak:.1f}% of the "
        f"{peak / 1e12:.0f} TFLOP/s dense bf16 peak"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    if args.gpu:
        for batch in (128, 256):
            gpu_throughput(batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        urls = prepare_shards(folder)
        ours = run_ours(urls, folder / "ours", args.steps, args.batch_size)
        theirs = run_open_clip(urls, folder / "open_clip_logs", args.steps, args.batch_size)
        ours_loader = run_loader("ours", urls, args.steps, args.batch_size)
        theirs_loader = run_loader("open_clip", urls, args.steps, args.batch_size)
    print(
        f"training, samples/s/device (median of logging windows): "
        f"ours {ours['samples_per_second']:.1f} ({ours['windows']} windows), "
        f"open_clip_train {theirs['samples_per_second']:.1f} ({theirs['windows']} windows)"
    )
    print(
        f"  ratio ours / open_clip_train: "
        f"{ours['samples_per_second'] / theirs['samples_per_second']:.2f} (target >= 1)"
    )
    print(
        f"data loading only, samples/s: ours {ours_loader:.1f}, open_clip_train "
        f"{theirs_loader:.1f}; ratio {ours_loader / theirs_loader:.2f}"
    )


if __name__ == "__main__":
    main()
