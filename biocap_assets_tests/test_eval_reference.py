"""The whole evaluation of a demo checkpoint against BioCAP's scripts.

``reference_*`` below redo, step by step, what ``zero_shot_iid.py``, ``retrieval_openclip.py``
and ``eval_rerank_with_clip.py`` do, with stock open_clip loading our export (as those
scripts load ``hf-hub:imageomics/biocap``), Hugging Face's ``datasets`` reading the
released INQUIRE-Rerank files, and the scripts' own loops. Where a checkout of the
reference and a Python that runs it are given (``BIOCAP_REFERENCE_REPO``,
``BIOCAP_REFERENCE_PYTHON``), the scripts themselves run on the same checkpoint and data.
"""

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from biocap_assets.evaluation.datasets import suite_from_data_dir
from biocap_assets.evaluation.runner import evaluate
from biocap_assets.training.model import CONFIG_DIR
from biocap_assets_tests.test_eval_metrics import _inquire_formulas

pytestmark = pytest.mark.slow

TEMPLATES = [lambda c: f"a photo of {c}.", *open_clip.OPENAI_IMAGENET_TEMPLATES]


def _taxon_com(row: dict) -> str:
    """imageomics/naming_eval.Taxon.taxon_common_name, written out."""
    ranks = [row[r] for r in ("kingdom", "phylum", "cls", "order", "family", "genus")]
    name = " ".join([*(r.capitalize() for r in ranks), row["species"].lower()])
    return f"{name} with common name {row['common_name']}" if row["common_name"] else name


def reference_zero_shot(model, preprocess, tokenizer, csv_path: Path, root: Path) -> dict:
    data = pd.read_csv(csv_path, index_col=0).fillna("")
    data["class"] = [_taxon_com(r) for r in data.to_dict("records")]
    classes = list(data["class"].unique())
    index = {c: i for i, c in enumerate(classes)}
    with torch.no_grad():
        weights = []
        for name in classes:
            emb = F.normalize(model.encode_text(tokenizer([t(name) for t in TEMPLATES])), dim=-1)
            emb = emb.mean(dim=0)
            weights.append(emb / emb.norm())
        classifier = torch.stack(weights, dim=1)
        ks = (1, min(len(classes), 3), min(len(classes), 5))
        correct = dict.fromkeys(ks, 0.0)
        rows = data.to_dict("records")
        for start in range(0, len(rows), 256):
            batch = rows[start : start + 256]
            images = []
            for r in batch:
                image = Image.open(root / r["filepath"])
                if image.mode in ("RGBA", "P"):
                    image = image.convert("RGB")
                images.append(preprocess(image))
            features = F.normalize(model.encode_image(torch.stack(images)), dim=-1)
            logits = model.logit_scale.exp() * features @ classifier
            target = torch.tensor([index[r["class"]] for r in batch])
            pred = logits.topk(max(ks), 1, True, True)[1].t()
            hit = pred.eq(target.view(1, -1).expand_as(pred))
            for k in ks:
                correct[k] += float(hit[:k].reshape(-1).float().sum())
    return {f"top{k}": 100 * v / len(rows) for k, v in correct.items()}


def reference_retrieval(model, preprocess, tokenizer, csv_path: Path, root: Path) -> dict:
    data = pd.read_csv(csv_path)
    images, texts = [], []
    with torch.no_grad():
        for _, row in data.iterrows():
            image = Image.open(root / f"{row['id']}.jpg").convert("RGB")
            images.append(model.encode_image(preprocess(image).unsqueeze(0)))
            texts.append(model.encode_text(tokenizer([f"a photo of{row['captions']}"])))
        image_features = torch.stack(images).squeeze()
        image_features /= image_features.norm(dim=-1, keepdim=True)
        text_features = torch.stack(texts).squeeze()
        text_features /= text_features.norm(dim=-1, keepdim=True)
    similarity = image_features @ text_features.T
    out = {}
    for name, sim in (("image_to_text", similarity), ("text_to_image", similarity.T)):
        for k in (1, 5, 10):
            hits = sum(int(i in sim[i].argsort()[-k:]) for i in range(len(sim)))
            out[f"{name}_R@{k}"] = 100 * hits / len(sim)
    return out


def reference_inquire(model, preprocess, tokenizer, folder: Path, cache: Path) -> dict:
    import datasets

    dataset = datasets.load_dataset(
        "parquet",
        data_files={"test": str(folder / "data" / "test-*.parquet")},
        split="test",
        cache_dir=str(cache),
    )
    embeddings = {}
    with torch.no_grad():
        for start in range(0, len(dataset), 256):
            batch = dataset[start : start + 256]
            pixels = torch.stack([preprocess(im) for im in batch["image"]])
            with torch.autocast("cpu"):
                embs = model.encode_image(pixels).cpu()
                embs /= embs.norm(dim=-1, keepdim=True)
            embeddings.update(zip(batch["inat24_image_id"], embs, strict=True))
    per_metric = {"AP": [], "nDCG": [], "MRR": []}
    queries = np.unique(dataset["query"]).tolist()
    all_queries = np.asarray(dataset["query"])
    for query in queries:
        rows = dataset.select(np.argwhere(all_queries == query).squeeze())
        with torch.no_grad():
            text = model.encode_text(tokenizer(query)).squeeze().cpu()
            text /= text.norm(dim=-1, keepdim=True)
        image_embs = torch.stack([embeddings[i] for i in rows["inat24_image_id"]])
        y_pred = (image_embs.float() @ text.float()).numpy()
        y_true = np.asarray(rows["relevant"])
        metrics = _inquire_formulas(y_true, y_pred, count_pos=int(sum(y_true)))
        for name, value in metrics.items():
            per_metric[name].append(value)
    return {name: 100 * float(np.mean(values)) for name, values in per_metric.items()}


@pytest.fixture(scope="module")
def ours(demo_world, demo_run):
    specs = suite_from_data_dir(demo_world.data_dir / "eval", demo_world.eval_images)
    evaluation = evaluate(str(demo_run / "export"), specs, lambda _: None)
    assert not evaluation.not_evaluated
    return {(r.task, r.metric): r.value for r in evaluation.rows}


@pytest.fixture(scope="module")
def stock_model(demo_run):
    folder = demo_run / "export"
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(f"local-dir:{folder}")


def test_zero_shot_equals_the_reference_way(ours, stock_model, demo_world):
    data = demo_world.data_dir / "eval/classification_annotation/demo_species/metadata.csv"
    theirs = reference_zero_shot(*stock_model, data, demo_world.eval_images / "demo_species")
    assert set(theirs) == {"top1", "top3", "top5"}
    for metric, value in theirs.items():
        assert ours[("zero_shot", metric)] == pytest.approx(value, abs=1e-9), metric
    assert ours[("zero_shot", "top1")] > 3 * 100 / 29, "the demo checkpoint beats chance"


def test_retrieval_equals_the_reference_way(ours, stock_model, demo_world):
    data = demo_world.data_dir / "eval/retrieval_annotations/demo_captions.csv"
    theirs = reference_retrieval(*stock_model, data, demo_world.eval_images / "demo_captions")
    for metric, value in theirs.items():
        assert ours[("retrieval", metric)] == pytest.approx(value, abs=1e-9), metric


def test_inquire_rerank_equals_the_reference_way(ours, stock_model, demo_world, tmp_path):
    folder = demo_world.data_dir / "eval/inquire_rerank"
    theirs = reference_inquire(*stock_model, folder, tmp_path / "hf")
    for metric, value in theirs.items():
        assert ours[("inquire_rerank", metric)] == pytest.approx(value, abs=0.1), metric


def _reference_checkout() -> tuple[Path, str]:
    root = os.environ.get("BIOCAP_REFERENCE_REPO")
    python = os.environ.get("BIOCAP_REFERENCE_PYTHON")
    if not (root and python):
        pytest.skip("BIOCAP_REFERENCE_REPO and BIOCAP_REFERENCE_PYTHON are not set")
    return Path(root) / "train_and_eval", python


def _run_reference(
    module: str, args: list[str], tmp_path: Path, tree: Path | None = None, env: dict | None = None
) -> str:
    """``python -m evaluation.<module>`` of the checkout (or of ``tree``, a path to its
    ``train_and_eval``), with our model config registered through the fork's own
    open_clip.add_model_config."""
    checkout, python = _reference_checkout()
    tree = tree or checkout
    bootstrap = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(tree)!r})\n"
        "import open_clip\n"
        f"open_clip.add_model_config({str(CONFIG_DIR)!r})\n"
        f"sys.argv = [{module!r}, *sys.argv[1:]]\n"
        f"runpy.run_module('evaluation.{module}', run_name='__main__')\n"
    )
    done = subprocess.run(
        [python, "-c", bootstrap, *args],
        cwd=tree if tree == checkout else tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="2", **(env or {})),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


# The released INQUIRE-Rerank as `datasets` caches a Hub dataset, made by `datasets` itself
# (the reference's Python) from the demo's Parquet in the released schema: the Parquet
# builder configured as the Hub's loader configures it (one "default" config holding the
# data files), under the repository id the script asks for. Offline, the script's own
# load_dataset("evendrow/INQUIRE-Rerank") then finds it.
CACHE_INQUIRE = """
import sys
from datasets.data_files import DataFilesDict
from datasets.load import configure_builder_class
from datasets.packaged_modules.parquet.parquet import Parquet, ParquetConfig

files, cache = sys.argv[1], sys.argv[2]
config = ParquetConfig(name="default", data_files=DataFilesDict.from_patterns({"test": [files]}))
builder = configure_builder_class(
    Parquet, builder_configs=[config], default_config_name="default", dataset_name="inquire-rerank"
)(cache_dir=cache, repo_id="evendrow/INQUIRE-Rerank", dataset_name="INQUIRE-Rerank", hash="local")
builder.download_and_prepare()
"""


def _run_inquire_script(checkpoint: str, folder: Path, tmp_path: Path) -> str:
    """eval_rerank_with_clip.py keeps its datasets cache in the checkout (data/inquire, from
    its own path): it runs from a link to the checkout's code in a scratch folder, so the
    cache (and its results CSV) land there."""
    checkout, python = _reference_checkout()
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "train_and_eval").symlink_to(checkout)
    cache = root / "data" / "inquire"
    made = subprocess.run(
        [python, "-c", CACHE_INQUIRE, str(folder / "data" / "test-*.parquet"), str(cache)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    return _run_reference(
        "eval_rerank_with_clip",
        ["--model-name", "biocap-tiny", "--pretrained", checkpoint],
        tmp_path,
        tree=root / "train_and_eval",
        env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )


def test_the_reference_scripts_print_our_numbers(ours, demo_world, demo_run, tmp_path):
    checkpoint = str(sorted(demo_run.glob("epoch_*.pt"))[-1])
    data = demo_world.data_dir / "eval"
    logs = tmp_path / "logs"
    _run_reference(
        "zero_shot_iid",
        [
            "--model", "biocap-tiny", "--pretrained", checkpoint,
            "--data_root", str(demo_world.eval_images / "demo_species"),
            "--label_filename", str(data / "classification_annotation/demo_species/metadata.csv"),
            "--text_type", "taxon_com", "--batch-size", "256", "--logs", str(logs),
        ],
        tmp_path,
    )  # fmt: skip
    printed = "".join(p.read_text() for p in logs.rglob("out.log"))
    compared = []
    for k in (1, 3, 5):
        value = float(re.search(rf"val-unseen-top{k}: ([0-9.]+)", printed).group(1))
        compared.append((f"zero-shot top-{k}", ours[("zero_shot", f"top{k}")], value))
    printed = _run_reference(
        "retrieval_openclip",
        [
            "--model-name", "biocap-tiny", "--pretrained", checkpoint, "--device", "cpu",
            "--csv-file", str(data / "retrieval_annotations/demo_captions.csv"),
            "--image-folder", str(demo_world.eval_images / "demo_captions"),
        ],
        tmp_path,
    )  # fmt: skip
    i2t, t2i = printed.split("T2I (Text to Image) Results:")
    for name, text in (("image_to_text", i2t), ("text_to_image", t2i)):
        for k in (1, 5, 10):
            value = 100 * float(re.search(rf"R@{k}: ([0-9.]+)", text).group(1))
            compared.append(
                (f"retrieval {name} R@{k}", ours[("retrieval", f"{name}_R@{k}")], value)
            )
    printed = _run_inquire_script(checkpoint, data / "inquire_rerank", tmp_path)
    # print(f'{title:30s}\t{ap:.1f}\t{ndcg:.1f}\t{mrr:.2f}'): AP and nDCG in percent
    ap, ndcg, mrr = (
        float(v) for v in re.search(r"biocap\s+([0-9.]+)\t([0-9.]+)\t([0-9.]+)", printed).groups()
    )
    compared += [
        ("INQUIRE-Rerank AP", ours[("inquire_rerank", "AP")], ap),
        ("INQUIRE-Rerank nDCG", ours[("inquire_rerank", "nDCG")], ndcg),
        ("INQUIRE-Rerank MRR (x100)", ours[("inquire_rerank", "MRR")], 100 * mrr),
    ]
    print("\n| metric | ours | the reference script printed |\n| --- | ---: | ---: |")
    for name, mine, theirs in compared:
        print(f"| {name} | {mine:.2f} | {theirs:.2f} |")
    for name, mine, theirs in compared:
        # each to the digits the script prints (MRR: two decimals of a fraction)
        assert mine == pytest.approx(theirs, abs=0.51 if "MRR" in name else 0.1), name


def test_a_dataset_that_cannot_be_read_is_named_and_the_others_go_on(
    demo_world, demo_run, tmp_path
):
    from biocap_assets.evaluation.datasets import load_suite

    suite = tmp_path / "suite.yaml"
    (tmp_path / "empty").mkdir()
    data = demo_world.data_dir / "eval/classification_annotation/demo_species/metadata.csv"
    suite.write_text(
        "datasets:\n"
        f"  - {{name: rerank, task: inquire_rerank, annotation: empty, image_root: ''}}\n"
        f"  - {{name: species, task: zero_shot, annotation: {data}, "
        f"image_root: {demo_world.eval_images / 'demo_species'}}}\n"
    )
    logged = []
    evaluation = evaluate(str(demo_run / "export"), load_suite(suite), logged.append)
    assert list(evaluation.not_evaluated) == ["rerank"]
    assert "huggingface-cli download evendrow/INQUIRE-Rerank" in evaluation.not_evaluated["rerank"]
    assert {r.dataset for r in evaluation.rows} == {"species"}
    assert any(m.startswith("not evaluating inquire_rerank rerank") for m in logged)
