"""Benchmark the BioCAP training loop against ``open_clip_train.main`` on CPU.

    python bench/train.py --steps 40

Same tiny model (``biocap-tiny``), same demo shards (captioned with the CPU
template captioner; a ``txt`` member added for open_clip_train, which reads
captions from it), same batch size, one process each, run side by side:

- steady state: samples/s per device as each loop reports it at its log lines (ours: the
  window since the last line; open_clip_train's "/s/gpu": the step before the line), the
  median after the first two;
- start-up: seconds from launching the process until it logs its first step;
- data loading only: batches from each loader, no model.

``--load N`` runs N busy processes alongside both (the same load for both sides).

Ours tokenises all six texts of every sample (one is used per step); open_clip_train
tokenises one caption. Also: ``--gpu`` measures ViT-B-16 bf16 training throughput on
an accelerator with synthetic batches (pairs/s/GPU and the share of peak FLOP/s) for each
speed option of the training config (fused AdamW, channels-last, torch.compile, gradient
checkpointing with batches of 512 and 1024), the model and optimizer made by the training
loop's own ``speed_options``.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def timed_run(command: list[str], env: dict, first_step: str) -> tuple[str, float | None]:
    """Run ``command``; its output, and the seconds from launch until a line matching
    ``first_step`` arrived (the first training step, as the process itself logs it)."""
    started = time.monotonic()
    first = None
    lines = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as process:
        for line in process.stdout:
            lines.append(line)
            if first is None and re.search(first_step, line):
                first = time.monotonic() - started
    text = "".join(lines)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{text[-3000:]}")
    return text, first


def steady(values: list[float]) -> float:
    """The median of the windows after the first two (start-up excluded)."""
    values = values[2:] if len(values) > 3 else values
    return statistics.median(values)


def run_ours(urls: list[str], out: Path, steps: int, batch: int, threads: str) -> dict:
    config = {
        "epochs": 1,
        "samples_per_epoch": steps * batch,
        "batch_size": batch,
        "log_every": 5,
        "warmup": 5,
    }
    text, first = timed_run(
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
        {**os.environ, "OMP_NUM_THREADS": threads},
        r"first step done",
    )
    rates = [float(v) for v in re.findall(r"([\d.]+) samples/s/device \(this window\)", text)]
    return {"steady": steady(rates), "windows": len(rates), "first_step_s": first}


def run_open_clip(urls: list[str], logs: Path, steps: int, batch: int, threads: str) -> dict:
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
    text, first = timed_run(
        [sys.executable, "-c", OPENCLIP_RUNNER, *argv],
        {**os.environ, "OMP_NUM_THREADS": threads},
        r"Train Epoch: 0 \[",
    )
    # its "/s/gpu" is the rate of the step just before each log line
    rates = [float(v) for v in re.findall(r"([\d.]+)/s/gpu", text)]
    return {"steady": steady(rates), "windows": len(rates), "first_step_s": first}


def run_loader(mode: str, urls: list[str], batches: int, batch: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", LOADER_RUNNER, mode, str(batches), str(batch), *urls],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["samples_per_second"]


GPU_VARIANTS = (
    ("baseline, batch 256", {}, 256),
    ("fused AdamW", {"fused_adamw": True}, 256),
    ("channels-last", {"channels_last": True}, 256),
    ("torch.compile", {"compile": True}, 256),
    ("all three", {"fused_adamw": True, "channels_last": True, "compile": True}, 256),
    ("grad checkpointing, batch 512", {"grad_checkpointing": True}, 512),
    ("grad checkpointing, batch 1024", {"grad_checkpointing": True}, 1024),
    (
        "all three + grad checkpointing, batch 1024",
        {"fused_adamw": True, "channels_last": True, "compile": True, "grad_checkpointing": True},
        1024,
    ),
)


def variant_config(options: dict):
    """The upstream training config with a variant's speed options (all others off)."""
    from biocap_assets.training.config import UPSTREAM

    speed = {"compile": False, "fused_adamw": False, "channels_last": False}
    return dataclasses.replace(UPSTREAM, **{**speed, "grad_checkpointing": False, **options})


def throughput(
    options: dict,
    batch: int,
    steps: int = 20,
    warmup: int = 10,
    device: str = "cuda",
    model_name: str = "ViT-B-16",
) -> tuple[float, float]:
    """Training steps in bf16 autocast on synthetic batches, the model and optimizer made by
    the training loop's own ``speed_options``; pairs/s and FLOP/s per pair counted (the
    share of the H100/H200's dense bf16 peak on CUDA). ``device="cpu"`` with a tiny model
    checks that every variant runs (the tests do), not its speed."""
    import torch
    from open_clip import ClipLoss
    from torch.utils.flop_counter import FlopCounterMode

    from biocap_assets.training.loop import speed_options
    from biocap_assets.training.model import create_model

    config = variant_config(options)
    model, *_ = create_model(model_name, device=device)
    model, optimizer = speed_options(model, config)
    loss_fn = ClipLoss()
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    size = model.clip.visual.image_size
    size = size if isinstance(size, int) else size[0]
    context, vocab = model.clip.context_length, model.clip.vocab_size

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def forward_backward(net, images, tokens, projector) -> None:
        with torch.autocast(device, dtype=torch.bfloat16):
            out = net(images, tokens, projector)
            loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        loss.backward()

    small = 8
    plain = create_model(model_name, device=device)[0]  # FLOPs counted without compile
    with FlopCounterMode(display=False) as counter:
        forward_backward(
            plain,
            torch.randn(small, 3, size, size, device=device),
            torch.randint(0, vocab, (small, context), device=device),
            "taxonomic",
        )
    flops_per_pair = counter.get_total_flops() / small
    del plain

    images = torch.randn(batch, 3, size, size, device=device).to(memory_format=memory)
    tokens = torch.randint(0, vocab, (batch, context), device=device)
    for i in range(steps + warmup):  # warm-up steps first (compilation happens there)
        if i == warmup:
            sync()
            start = time.perf_counter()
        forward_backward(model, images, tokens, "caption" if i % 2 else "taxonomic")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    pairs = batch * steps / (time.perf_counter() - start)
    peak = 989e12  # dense bf16 of the H100/H200 SXM (vendor datasheet)
    return pairs, pairs * flops_per_pair / peak


def gpu_variants() -> None:
    import torch

    print(f"{torch.cuda.get_device_name()}: ViT-B-16 bf16 (autocast), fp32 master weights")
    print("| variant | batch | pairs/s/GPU | share of dense bf16 peak |")
    print("| --- | ---: | ---: | ---: |")
    base = None
    for name, options, batch in GPU_VARIANTS:
        try:
            pairs, share = throughput(options, batch)
        except torch.OutOfMemoryError:
            print(f"| {name} | {batch} | out of memory | |")
            continue
        finally:
            torch.cuda.empty_cache()
        base = base or pairs
        print(f"| {name} | {batch} | {pairs:.0f} ({pairs / base:.2f}x) | {100 * share:.1f}% |")


def busy(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep one core busy (stopped by their pids)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--load", type=int, default=0, help="busy processes running alongside")
    parser.add_argument("--threads", default="2", help="OMP_NUM_THREADS of both trainings")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; medians")
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    if args.gpu:
        gpu_variants()
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        urls = prepare_shards(folder)
        load = busy(args.load)
        try:
            runs = {"ours": [], "theirs": []}
            for i in range(args.repeat):  # alternating, so drift hits both sides alike
                runs["ours"].append(
                    run_ours(urls, folder / f"ours-{i}", args.steps, args.batch_size, args.threads)
                )
                runs["theirs"].append(
                    run_open_clip(
                        urls, folder / f"logs-{i}", args.steps, args.batch_size, args.threads
                    )
                )
            ours, theirs = (
                {
                    k: statistics.median(r[k] for r in runs[side])
                    for k in ("steady", "windows", "first_step_s")
                }
                for side in ("ours", "theirs")
            )
            ours_loader = run_loader("ours", urls, args.steps, args.batch_size)
            theirs_loader = run_loader("open_clip", urls, args.steps, args.batch_size)
        finally:
            for process in load:
                process.kill()
                process.wait()
    print(
        f"background load: {args.load} busy process(es); OMP_NUM_THREADS={args.threads}; "
        f"medians of {args.repeat} runs of each side"
    )
    print("| | ours | open_clip_train | ratio |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| steady state, samples/s/device (median window after the first two; "
        f"{ours['windows']} / {theirs['windows']} windows) | {ours['steady']:.1f} | "
        f"{theirs['steady']:.1f} | {ours['steady'] / theirs['steady']:.2f} |"
    )
    print(
        f"| seconds from launch to the first step | {ours['first_step_s']:.1f} | "
        f"{theirs['first_step_s']:.1f} | {ours['first_step_s'] / theirs['first_step_s']:.2f} |"
    )
    print(
        f"| data loading only, samples/s | {ours_loader:.1f} | {theirs_loader:.1f} | "
        f"{ours_loader / theirs_loader:.2f} |"
    )
    print("targets: steady-state ratio >= 1.0; first step no later than open_clip_train's")


if __name__ == "__main__":
    main()
