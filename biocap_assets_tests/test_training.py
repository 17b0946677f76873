"""BioCAP training: the dual projector, text mixing, torchrun with two ranks, learning."""

import json
import os
import subprocess
import sys

import kubernetes_validate
import pytest
import torch

from biocap_assets.demo.species import SPECIES
from biocap_assets.demo.wiki import visual_paragraphs
from biocap_assets.inference.tasks import TemplateCaptionerAdapter
from biocap_assets.resources.k8s import PodOptions, training_manifests
from biocap_assets.shards.rewrite import rewrite_shard
from biocap_assets.training.model import create_model
from biocap_assets.training.text_mix import TEXT_TYPES, projector_for, text_type_for_step


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("biocap-tiny")


def test_caption_projector_starts_as_a_copy_of_proj(tiny):
    model, *_ = tiny
    assert model.caption_proj.shape == model.clip.visual.proj.shape
    assert torch.equal(model.caption_proj, model.clip.visual.proj)
    assert model.caption_proj.data_ptr() != model.clip.visual.proj.data_ptr()
    assert torch.equal(model.caption_logit_scale, model.clip.logit_scale)


def test_each_text_type_trains_its_own_projector(tiny):
    model, _, _, tokenizer = tiny
    images = torch.randn(4, 3, 64, 64)
    tokens = tokenizer(["a photo of a red bird"] * 2 + ["a blue fish"] * 2)
    for text_type in ("caption", "taxon"):
        model.zero_grad(set_to_none=True)
        out = model(images, tokens, projector_for(text_type))
        assert out["image_features"].shape == (4, 64)
        assert torch.allclose(out["image_features"].norm(dim=-1), torch.ones(4), atol=1e-5)
        logits = out["logit_scale"] * out["image_features"] @ out["text_features"].T
        torch.nn.functional.cross_entropy(logits, torch.arange(4)).backward()
        caption_grad = model.caption_proj.grad
        tax_grad = model.clip.visual.proj.grad
        if text_type == "caption":
            assert caption_grad is not None and caption_grad.abs().sum() > 0
            assert tax_grad is None and model.clip.logit_scale.grad is None
        else:
            assert tax_grad is not None and tax_grad.abs().sum() > 0
            assert caption_grad is None and model.caption_logit_scale.grad is None
        text_grads = [p.grad for p in model.clip.transformer.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in text_grads), "shared text tower"


def test_text_type_sequence_is_reproducible_and_covers_all_types():
    first = [text_type_for_step(s, seed=7) for s in range(600)]
    assert first == [text_type_for_step(s, seed=7) for s in range(600)]
    assert first != [text_type_for_step(s, seed=8) for s in range(600)]
    assert set(first) == set(TEXT_TYPES)
    assert all(70 <= first.count(t) <= 130 for t in TEXT_TYPES), "uniform by default"
    only = [text_type_for_step(s, 0, {"caption": 1.0}) for s in range(20)]
    assert set(only) == {"caption"}
    with pytest.raises(ValueError):
        text_type_for_step(0, 0, {"caption": 0.0})


@pytest.fixture(scope="module")
def captioned(demo_world, tmp_path_factory):
    """The demo shards captioned with the CPU template captioner (no Dagster needed)."""
    folder = tmp_path_factory.mktemp("captioned")
    texts = {s.taxon.binomial: " ".join(visual_paragraphs(s)) for s in SPECIES}
    paths = []
    for shard in demo_world.train_shards:
        out = folder / shard.name
        with shard.open("rb") as src, out.open("wb") as dst:
            rewrite_shard(
                src,
                dst,
                TemplateCaptionerAdapter(),
                describe=lambda r: texts.get(f"{r.get('genus', '')} {r.get('species', '')}"),
            )
        paths.append(str(out))
    return paths


def run_train(urls, out, config, nproc=0, rank_report="", timeout=600):
    command = [
        sys.executable,
        "-m",
        "biocap_assets.workers.train",
        "--train",
        *urls[:-1],
        "--val",
        urls[-1],
        "--out",
        str(out),
        "--train-samples",
        "580",
        "--config",
        json.dumps(config),
    ]
    if nproc:
        command[1:2] = [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
        ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if rank_report:
        command += ["--rank-report", rank_report]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout[done.stdout.index("{") :])


@pytest.mark.slow
def test_two_ranks_agree_checkpoint_and_resume(captioned, tmp_path):
    config = {"epochs": 1, "batch_size": 16, "samples_per_epoch": 96, "warmup": 2}
    first = run_train(
        captioned, tmp_path / "run", config, nproc=2, rank_report=str(tmp_path / "ranks1")
    )
    assert first["world_size"] == 2 and first["steps"] == 3 and first["resumed_from_epoch"] == 0
    ranks = [json.loads((tmp_path / "ranks1" / f"rank_{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["text_types"] == ranks[1]["text_types"]
    assert ranks[0]["param_checksum"] == pytest.approx(ranks[1]["param_checksum"], rel=1e-9)
    assert (tmp_path / "run" / "epoch_1.pt").is_file()
    assert json.loads((tmp_path / "run" / "epoch_1.json").read_text())["step"] == 3

    second = run_train(
        captioned,
        tmp_path / "run",
        {**config, "epochs": 2},
        nproc=2,
        rank_report=str(tmp_path / "ranks2"),
    )
    assert second["resumed_from_epoch"] == 1 and second["steps"] == 6
    resumed = json.loads((tmp_path / "ranks2" / "rank_0.json").read_text())
    assert resumed["step"] == 6 and len(resumed["text_types"]) == 3
    assert resumed["text_types"] == [text_type_for_step(s, 0) for s in range(3, 6)]


@pytest.mark.slow
def test_training_on_the_demo_lowers_validation_loss(captioned, tmp_path):
    result = run_train(captioned, tmp_path / "run", {"epochs": 6})
    summary = json.loads((tmp_path / "run" / "epoch_6.json").read_text())
    evals = [h for h in summary["history"] if "val_tax_loss" in h]
    first, last = evals[0], evals[-1]
    assert last["val_tax_loss"] < first["val_tax_loss"] - 1.0
    assert last["val_caption_loss"] < first["val_caption_loss"] - 1.0
    assert result["val_tax_loss"] < 3.0  # chance for a batch of 64 is ln 64 = 4.16


@pytest.mark.parametrize("nnodes", [2, 4])
def test_multi_node_manifests_validate(nnodes):
    options = PodOptions(image="registry.example.org/biocap-gpu:0.1.0", namespace="biocap")
    service, job = training_manifests(
        "biocap-train-a1b2",
        options,
        nnodes=nnodes,
        gpus_per_node=4,
        worker_args=["--preset", "upstream"],
    )
    for manifest in (service, job):
        kubernetes_validate.validate(manifest, "1.33", strict=True)
    assert service["spec"]["clusterIP"] == "None"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == nnodes
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    command = pod["containers"][0]["command"][-1]
    assert f"--nnodes={nnodes}" in command and "--nproc_per_node=4" in command
    assert "--node_rank=${JOB_COMPLETION_INDEX}" in command
    assert "biocap-train-a1b2-0.biocap-train-a1b2.biocap.svc.cluster.local:29500" in command
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
