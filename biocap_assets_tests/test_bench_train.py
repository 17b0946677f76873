"""bench/train.py --gpu must run every variant it lists: no accelerator reaches CI, so each
variant is run here on the CPU with the tiny demo model (speed is not measured)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "train.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_variant_sets_exactly_its_speed_options(bench):
    flags = ("compile", "fused_adamw", "channels_last", "grad_checkpointing")
    for name, options, _ in bench.GPU_VARIANTS:
        config = bench.variant_config(options)
        on = {flag for flag in flags if getattr(config, flag)}
        assert on == {k for k, v in options.items() if v}, name


def test_every_gpu_variant_runs_a_training_step(bench):
    seen = set()
    for name, options, _ in bench.GPU_VARIANTS:
        # torch.compile is left out on the CPU (minutes of inductor for nothing measured)
        options = {k: v for k, v in options.items() if k != "compile"}
        if tuple(sorted(options.items())) in seen:
            continue
        seen.add(tuple(sorted(options.items())))
        pairs, share = bench.throughput(
            options, batch=4, steps=1, warmup=1, device="cpu", model_name="biocap-tiny"
        )
        assert pairs > 0 and share > 0, name
