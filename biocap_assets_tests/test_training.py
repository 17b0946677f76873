"""BioCAP training: the dual projector, text mixing, torchrun with two ranks, learning."""

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import torch

from biocap_assets.resources.k8s import PodOptions, training_manifests
from biocap_assets.training.model import create_model
from biocap_assets.training.text_mix import TEXT_TYPES, projector_for, text_type_for_step
from biocap_assets_tests.conftest import run_train


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
    service, policy, job = training_manifests(
        "biocap-train-a1b2",
        options,
        nnodes=nnodes,
        gpus_per_node=4,
        worker_args=["--preset", "upstream"],
    )
    for manifest in (service, policy, job):
        kubernetes_validate.validate(manifest, "1.33", strict=True)
    assert service["spec"]["clusterIP"] == "None"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == nnodes
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    command = pod["containers"][0]["command"][-1]
    assert f"--nnodes={nnodes}" in command and "--nproc_per_node=4" in command
    # static rendezvous: the pod's index is its node rank, pod 0 the master (rank 0)
    assert '--node_rank="${JOB_COMPLETION_INDEX}"' in command
    assert "--master_addr=biocap-train-a1b2-0.biocap-train-a1b2.biocap.svc.cluster.local" in command
    assert "--master_port=29500" in command and "rdzv" not in command
    assert command.endswith("-m biocap_assets.workers.train --preset upstream")
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"


# -- checkpoints in the ecosystem's layouts -----------------------------------------------


def _trained_tiny(seed: int = 0):
    torch.manual_seed(seed)
    model, _, preprocess, tokenizer = create_model("biocap-tiny")
    with torch.no_grad():  # make the two heads differ, as training does
        model.caption_proj.add_(torch.randn_like(model.caption_proj) * 0.1)
        model.caption_logit_scale.add_(0.3)
    return model, preprocess, tokenizer


def test_the_state_dict_names_the_caption_head_as_the_reference_fork():
    model, *_ = _trained_tiny()
    keys = set(model.clip.state_dict())
    assert {"visual.proj", "visual.caption_proj", "logit_scale", "logit_scale_caption"} <= keys
    assert not any(k.startswith("clip.") for k in keys)


def test_the_export_loads_in_stock_open_clip_with_the_taxonomic_head(tmp_path):
    import open_clip
    from upath import UPath

    from biocap_assets.training.checkpoint import export_for_hub, load_export
    from biocap_assets.training.model import model_config

    model, _, _ = _trained_tiny()
    folder = export_for_hub(model.clip, model_config("biocap-tiny"), UPath(tmp_path))
    assert sorted(p.name for p in Path(folder).iterdir()) == [
        "caption_head.safetensors",
        "open_clip_config.json",
        "open_clip_model.safetensors",
    ]
    # Stock open_clip, one line, as users load BioCLIP and BioCAP from the hub.
    clip, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    assert type(clip).__name__ == "CLIP"
    assert torch.equal(clip.visual.proj, model.clip.visual.proj)
    images = torch.randn(2, 3, 64, 64)
    tokens = tokenizer(["a photo of a red bird", "a blue fish"])
    model.eval(), clip.eval()
    with torch.no_grad():
        assert torch.allclose(
            clip.encode_image(images, normalize=True), model.encode_image(images), atol=1e-6
        )
        assert torch.allclose(clip.encode_text(tokens, normalize=True), model.encode_text(tokens))
    # The caption head comes back from its side file, named in the config.
    config = json.loads((Path(folder) / "open_clip_config.json").read_text())
    assert config["biocap"]["caption_head"] == "caption_head.safetensors"
    loaded, _, _ = load_export(folder)
    assert torch.equal(loaded.caption_proj, model.caption_proj)
    assert torch.equal(loaded.caption_logit_scale, model.caption_logit_scale)
    assert not torch.equal(loaded.caption_proj, loaded.clip.visual.proj)


def test_the_reference_fork_loads_both_heads_from_an_epoch_checkpoint(tmp_path):
    """Through the fork's own factory (BIOCAP_REFERENCE_REPO: a checkout of Imageomics/biocap).

    Its loader is not strict and copies visual.proj into a missing caption head, so the
    loaded caption head must equal ours, not the taxonomic one."""
    root = os.environ.get("BIOCAP_REFERENCE_REPO")
    if not root:
        pytest.skip("BIOCAP_REFERENCE_REPO (a checkout of Imageomics/biocap) is not set")
    from upath import UPath

    from biocap_assets.training import checkpoint
    from biocap_assets.training.model import CONFIG_DIR

    model, *_ = _trained_tiny()
    path = checkpoint.save(
        UPath(tmp_path),
        1,
        {"epoch": 1, "name": "t", "state_dict": model.clip.state_dict(), "optimizer": {}},
        {},
    )
    script = (
        "import sys, json, torch, open_clip\n"
        f"open_clip.add_model_config({str(CONFIG_DIR)!r})\n"
        "cfg = open_clip.get_model_config('biocap-tiny')\n"
        "m = open_clip.create_model('biocap-tiny', pretrained=sys.argv[1],\n"
        "    vision_cfg={**cfg['vision_cfg'], 'dual_projector': True})\n"
        "torch.save({k: v for k, v in m.state_dict().items()}, sys.argv[2])\n"
    )
    python = os.environ.get("BIOCAP_REFERENCE_PYTHON", sys.executable)
    out = tmp_path / "loaded.pt"
    done = subprocess.run(
        [python, "-c", script, str(path), str(out)],
        cwd=Path(root) / "train_and_eval",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = torch.load(out)
    assert torch.equal(loaded["visual.caption_proj"], model.caption_proj)
    assert torch.equal(loaded["logit_scale_caption"], model.caption_logit_scale)
    assert torch.equal(loaded["visual.proj"], model.clip.visual.proj)


def test_resuming_from_the_earlier_checkpoint_layout_keeps_weights_and_optimizer(tmp_path):
    from upath import UPath

    from biocap_assets.training import checkpoint
    from biocap_assets.training.loop import group_names, param_groups, resume

    model, _, _ = _trained_tiny()
    # ... and an optimizer whose parameter order was that wrapper's.
    legacy_names = [
        *(k for k in model.clip.state_dict() if "caption" not in k),
        "caption_proj",
        "caption_logit_scale",
    ]
    params = dict(model.clip.named_parameters())
    legacy_params = {
        n: params[{"caption_proj": "visual.caption_proj"}.get(n, n)]
        if n != "caption_logit_scale"
        else params["logit_scale_caption"]
        for n in legacy_names
        if {
            "caption_proj": "visual.caption_proj",
            "caption_logit_scale": "logit_scale_caption",
        }.get(n, n)
        in params
    }
    exclude = set(group_names(model.clip)[0]) | {"caption_logit_scale"}
    old_groups = [
        [n for n in legacy_params if n in exclude],
        [n for n in legacy_params if n not in exclude],
    ]
    old_optimizer = torch.optim.AdamW(
        [{"params": [legacy_params[n] for n in g]} for g in old_groups], lr=1e-3
    )
    for p in legacy_params.values():  # give every parameter its own moment
        p.grad = torch.full_like(p, 0.5) * (1 + p.numel() % 7)
    old_optimizer.step()
    moment_of = {n: old_optimizer.state[legacy_params[n]]["exp_avg"].clone() for n in legacy_params}
    # The earlier layout: a wrapper whose state dict was clip.* then the caption head.
    legacy_model = {
        f"clip.{k}": v for k, v in model.clip.state_dict().items() if "caption" not in k
    }
    legacy_model |= {
        "caption_proj": model.caption_proj.detach().clone(),
        "caption_logit_scale": model.caption_logit_scale.detach().clone(),
    }
    (tmp_path / "run").mkdir()
    torch.save(
        {
            "model": legacy_model,
            "optimizer": old_optimizer.state_dict(),
            "step": 40,
            "model_name": "biocap-tiny",
        },
        tmp_path / "run" / "epoch_1.pt",
    )
    fresh, *_ = create_model("biocap-tiny")
    optimizer = torch.optim.AdamW(param_groups(fresh, 0.2), lr=1e-3)
    step = resume(fresh, optimizer, UPath(tmp_path / "run" / "epoch_1.pt"), "cpu")
    assert step == 40
    assert torch.equal(fresh.caption_proj, model.caption_proj)
    assert torch.equal(fresh.clip.visual.proj, model.clip.visual.proj)
    new_params = dict(fresh.clip.named_parameters())
    renamed = {"caption_proj": "visual.caption_proj", "caption_logit_scale": "logit_scale_caption"}
    for old_name, moment in moment_of.items():
        param = new_params[renamed.get(old_name, old_name)]
        assert torch.equal(optimizer.state[param]["exp_avg"], moment), old_name
    state = checkpoint.load_state(UPath(tmp_path / "run" / "epoch_1.pt"))
    assert state["legacy_layout"] and "visual.caption_proj" in state["state_dict"]


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    from upath import UPath

    from biocap_assets.training import checkpoint

    bad = tmp_path / "epoch_1.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="epoch_1.pt: not a readable"):
        checkpoint.load_state(UPath(bad))
    torch.save({"weights": {}}, bad)
    with pytest.raises(checkpoint.CheckpointError, match="neither open_clip_train's layout"):
        checkpoint.load_state(UPath(bad))


# -- gradient accumulation as open_clip_train's --accum-freq --------------------------------


def test_accumulation_gives_the_full_batch_loss_and_gradients():
    from open_clip import ClipLoss

    from biocap_assets.training.loop import contextlib as loop_contextlib
    from biocap_assets.training.loop import contrastive_step

    torch.manual_seed(0)
    model, _, _, tokenizer = create_model("biocap-tiny")
    model.eval()  # no dropout: both ways see the same network
    images = torch.randn(8, 3, 64, 64)
    tokens = tokenizer([f"a photo of bird number {i}" for i in range(8)])
    loss_fn = ClipLoss()

    def grads():
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    full = contrastive_step(
        model, loss_fn, [(images, tokens)], "caption", loop_contextlib.nullcontext
    )
    full_grads = grads()
    model.zero_grad()
    accumulated = contrastive_step(
        model,
        loss_fn,
        [(images[i : i + 2], tokens[i : i + 2]) for i in range(0, 8, 2)],
        "caption",
        loop_contextlib.nullcontext,
    )
    accum_grads = grads()
    assert accumulated == pytest.approx(full, abs=1e-5), "the loss of the whole batch"
    small = contrastive_step(
        model, loss_fn, [(images[:2], tokens[:2])], "caption", loop_contextlib.nullcontext
    )
    assert abs(small - full) > 0.1, "a micro-batch alone is a different (smaller) contrast"
    for name, grad in full_grads.items():
        expected = grad * 4 if "logit_scale" in name else grad  # as open_clip_train
        assert torch.allclose(accum_grads[name], expected, atol=1e-5, rtol=1e-4), name


# -- initial weights -------------------------------------------------------------------------


def test_pretrained_weights_from_a_local_file_start_the_run(tmp_path, captioned):
    import open_clip

    from biocap_assets.training.model import register_model_configs

    register_model_configs()
    torch.manual_seed(123)
    start = open_clip.create_model("biocap-tiny")
    torch.save({"state_dict": start.state_dict()}, tmp_path / "start.pt")
    config = {
        "epochs": 1,
        "batch_size": 16,
        "samples_per_epoch": 16,
        "warmup": 1,
        "lr": 0.0,
        "pretrained": str(tmp_path / "start.pt"),
    }
    run_train(captioned, tmp_path / "run", config)
    state = torch.load(tmp_path / "run" / "epoch_1.pt", weights_only=False)["state_dict"]
    assert torch.equal(state["visual.proj"], start.visual.proj), "lr 0: the weights given"
    assert torch.equal(state["visual.caption_proj"], start.visual.proj), "caption head copied"


def test_offline_without_weights_fails_at_once_with_what_to_do(monkeypatch, tmp_path):
    from biocap_assets.training.pretrained import PretrainedUnavailable, check

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedUnavailable, match="HF_HUB_OFFLINE") as info:
        check("ViT-B-16", "openai")
    assert "huggingface-cli download timm/vit_base_patch16_clip_224.openai" in str(info.value)
    assert "pretrained: /models/" in str(info.value)
    with pytest.raises(PretrainedUnavailable, match="no such file"):
        check("ViT-B-16", str(tmp_path / "missing.bin"))
    with pytest.raises(PretrainedUnavailable, match="no pretrained tag 'openai' for 'biocap-tiny'"):
        check("biocap-tiny", "openai")
    assert check("biocap-tiny", None).kind == "none"
    # What a cached download looks like to huggingface_hub: then the run may start.
    snapshot = tmp_path / "empty/hub/models--timm--vit_base_patch16_clip_224.openai/snapshots/abc"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc")
    assert check("ViT-B-16", "openai").kind == "cached"
    # The workers' own environment decides: their cache, their offline flag.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(PretrainedUnavailable, match=str(tmp_path / "elsewhere")):
        check("ViT-B-16", "openai")
    workers = {"HF_HOME": str(tmp_path / "empty")}
    assert check("ViT-B-16", "openai", worker_env=workers).kind == "cached"
    # Workers in pods: their volume cannot be seen from here; the worker checks itself.
    pods = {"HF_HOME": "/models", "HF_HUB_OFFLINE": "1"}
    assert check("ViT-B-16", "openai", worker_env=pods, same_machine=False).kind == "unchecked"
    assert check("ViT-B-16", "/models/w.bin", same_machine=False).kind == "unchecked"


def test_the_upstream_preset_fine_tunes_openai_clip():
    from biocap_assets.training.config import PRESETS

    assert PRESETS["upstream"].model == "ViT-B-16"
    assert PRESETS["upstream"].pretrained == "openai", "slurm/train.sh: --pretrained 'openai'"
    assert PRESETS["demo"].pretrained is None


def test_the_training_step_fails_before_launching_when_weights_cannot_be_had(monkeypatch, tmp_path):
    """The upstream recipe offline with an empty cache: the step fails at once, with what
    to do, and no worker (no GPU pod) is ever launched."""
    import dagster as dg
    import pyarrow as pa

    from biocap_assets.assets.training import TrainingConfig, clip_checkpoint
    from biocap_assets.resources import LauncherResource, SourcesResource, StorageResource

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    launched = []

    class NoLaunch(LauncherResource):
        def run(self, *args, **kwargs):
            launched.append(args)
            raise AssertionError("no worker may start")

    stats = pa.table({"shard": ["000000", "000001"], "output_url": ["a.tar", "b.tar"],
                      "captioned": [10, 10]})  # fmt: skip
    context = dg.build_asset_context()
    with pytest.raises(dg.Failure, match="huggingface-cli download") as info:
        list(
            clip_checkpoint(
                context,
                TrainingConfig(preset="upstream"),
                stats,
                SourcesResource(demo_root=str(tmp_path / "demo"), shards_url="/x/{0..1}.tar"),
                NoLaunch(),
                StorageResource(root_url=(tmp_path / "storage").as_uri()),
            )
        )
    assert "initial weights unavailable" in str(info.value) and not launched


def test_recaptioning_a_shard_changes_the_data_version_and_so_the_run(demo_world, tmp_path):
    """Two caption runs that differ in one caption: the training run folder differs, so
    the asset never returns the old checkpoint as new."""
    import pyarrow as pa

    from biocap_assets.assets.training import data_version
    from biocap_assets.workers.caption import run

    class Log:
        def info(self, message):
            pass

        warning = info

    shard = str(demo_world.train_shards[0])
    rows = []
    for seed, descriptions in ((0, None), (1, tmp_path / "descriptions.parquet")):
        extras = {"input": shard, "output": str(tmp_path / f"out-{seed}.tar"), "source": "cpu"}
        if descriptions:
            import pyarrow.parquet as pq

            pq.write_table(
                pa.table({"genus": ["Cardinalis"], "species": ["cardinalis"], "kingdom": [
                    "Animalia"], "phylum": ["Chordata"], "class": ["Aves"], "order": [
                    "Passeriformes"], "family": ["Cardinalidae"], "description": [
                    "It is red with a black mask around the bill."]}),
                descriptions,
            )  # fmt: skip
            extras["descriptions"] = str(descriptions)
        report = run(extras, Log())
        rows.append({**report, "shard": "000000"})
    assert rows[0]["samples"] == rows[1]["samples"] and rows[0]["model"] == rows[1]["model"]
    assert rows[0]["sha256"] != rows[1]["sha256"], "a caption changed"
    first, second = (data_version(pa.Table.from_pylist([r])) for r in rows)
    assert first != second
    assert data_version(pa.Table.from_pylist([rows[0]])) == first, "stable for the same data"


def test_another_training_config_is_another_run_more_epochs_the_same():
    from dataclasses import replace

    from biocap_assets.training.config import PRESETS

    upstream = PRESETS["upstream"]
    assert replace(upstream, pretrained="/models/other.bin").identity() != upstream.identity()
    assert replace(upstream, lr=5e-4).identity() != upstream.identity()
    assert replace(upstream, epochs=60).identity() == upstream.identity(), "resumes, longer"
    assert replace(upstream, workers=16).identity() == upstream.identity(), "speed only"
    for speed in ("compile", "fused_adamw", "channels_last"):
        assert replace(upstream, **{speed: True}).identity() == upstream.identity(), speed


def test_prune_keeps_the_newest_complete_epochs(tmp_path):
    from upath import UPath

    from biocap_assets.training import checkpoint

    folder = UPath(tmp_path)
    for epoch in range(1, 6):
        checkpoint.save(folder, epoch, {"epoch": epoch}, {"loss": 1.0})
    (tmp_path / "epoch_6.pt").write_bytes(b"half")  # no summary: not complete, not counted
    assert checkpoint.prune(folder, keep=2) == [4, 5]
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pt")) == [
        "epoch_4.pt",
        "epoch_5.pt",
        "epoch_6.pt",
    ]
    assert len(list(tmp_path.glob("epoch_*.json"))) == 5, "summaries stay"
    assert checkpoint.latest(folder)[0] == 5, "resuming still finds the newest"
    assert checkpoint.prune(folder, keep=0) == [4, 5], "0 keeps all"


def test_training_job_arguments_stay_one_word_each_for_the_shell():
    import shlex

    from biocap_assets.resources.k8s import PodOptions, training_manifests

    tricky = ["--config", '{"note": "a b; rm -rf /"}', "--out", "s3://b/it's here"]
    _, _, job = training_manifests("biocap-train-x", PodOptions(image="i"), 2, 1, tricky)
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    words = shlex.split(script.removeprefix("exec "))
    assert words[-len(tricky) :] == tricky


def test_validation_shards_validate_and_every_training_shard_trains():
    """As BioCAP's --train-data / --val-data: the val-* partitions validate and all the
    others train; without any, the last training shard is held out."""
    import dagster as dg
    import pyarrow as pa

    from biocap_assets.assets.training import split_shards

    keys = ["000000", "000001", "000002", "val-000000", "val-000001"]
    train, val = split_shards(pa.table({"shard": keys}), val_shards=1)
    assert [r["shard"] for r in train] == keys[:3]
    assert [r["shard"] for r in val] == ["val-000000", "val-000001"]
    train, val = split_shards(pa.table({"shard": keys[:3]}), val_shards=1)
    assert ([r["shard"] for r in train], [r["shard"] for r in val]) == (keys[:2], ["000002"])
    with pytest.raises(dg.Failure, match="no shard to train on"):
        split_shards(pa.table({"shard": ["val-000000"]}), val_shards=1)
