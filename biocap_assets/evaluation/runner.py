"""Evaluate one checkpoint on a suite of datasets (runs in the ``evaluate`` worker).

Image embeddings are computed once per image and projector, in batches, and
reused across datasets. Zero-shot uses the taxonomic projector and open_clip's
zero-shot classifier over the 80 OpenAI ImageNet templates; retrieval and INQUIRE
(free text) use the caption projector. Every metric row carries its chance level.
Images that are missing are counted and reported, and left out of the denominators.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from upath import UPath

from biocap_assets.evaluation import datasets as ds
from biocap_assets.evaluation import metrics
from biocap_assets.training import checkpoint as ckpt
from biocap_assets.training.model import DualProjectionCLIP, create_model


@dataclass
class MetricRow:
    task: str
    dataset: str
    metric: str
    value: float  # in percent
    chance: float  # in percent
    n: int


def load_model(path: str, device: str = "cpu"):
    state = ckpt.load_state(UPath(path), device)
    model, _, preprocess, tokenizer = create_model(state["model_name"], device=device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, preprocess, tokenizer


class ImageEmbedder:
    def __init__(
        self, model: DualProjectionCLIP, preprocess: Callable, device: str, batch_size: int = 128
    ):
        self.model, self.preprocess, self.device = model, preprocess, device
        self.batch_size = batch_size
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.missing: set[str] = set()

    @torch.no_grad()
    def embed(self, paths: list[Path], projector: str) -> dict[str, np.ndarray]:
        """Embeddings of the images that exist, by path string."""
        todo = [
            p
            for p in dict.fromkeys(str(p) for p in paths)
            if (p, projector) not in self._cache and p not in self.missing
        ]
        for start in range(0, len(todo), self.batch_size):
            batch, tensors = [], []
            for path in todo[start : start + self.batch_size]:
                try:
                    with Image.open(path) as image:
                        tensors.append(self.preprocess(image.convert("RGB")))
                    batch.append(path)
                except (FileNotFoundError, OSError):
                    self.missing.add(path)
            if batch:
                features = (
                    self.model.encode_image(torch.stack(tensors).to(self.device), projector)
                    .cpu()
                    .numpy()
                )
                self._cache.update(
                    {(p, projector): f for p, f in zip(batch, features, strict=True)}
                )
        return {
            str(p): self._cache[(str(p), projector)]
            for p in paths
            if (str(p), projector) in self._cache
        }


@torch.no_grad()
def _texts(model: DualProjectionCLIP, tokenizer, texts: list[str], device: str) -> np.ndarray:
    out = []
    for start in range(0, len(texts), 256):
        tokens = tokenizer(texts[start : start + 256]).to(device)
        out.append(model.encode_text(tokens).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1))


def _available(
    task: str, name: str, root: Path, images: list[str], projector: str, embedder: ImageEmbedder
) -> tuple[dict[str, np.ndarray], list[int], MetricRow]:
    """Embeddings of the images found, their indices, and the missing-images row."""
    found = embedder.embed([root / p for p in images], projector)
    keep = [i for i, p in enumerate(images) if str(root / p) in found]
    missing = MetricRow(task, name, "missing_images", len(images) - len(keep), 0.0, len(images))
    return found, keep, missing


def zero_shot(
    spec: ds.DatasetSpec, model, tokenizer, embedder: ImageEmbedder, device: str
) -> list[MetricRow]:
    data = ds.read_classification(Path(spec.annotation), spec.name, spec.label_format)
    root = Path(spec.image_root)
    found, keep, missing = _available(
        "zero_shot", spec.name, root, data.images, "taxonomic", embedder
    )
    classifier = (
        open_clip.build_zero_shot_classifier(
            model,
            tokenizer,
            data.classnames,
            open_clip.OPENAI_IMAGENET_TEMPLATES,
            num_classes_per_batch=10,
            device=device,
            use_tqdm=False,
        )
        .cpu()
        .numpy()
    )
    n_classes = len(data.classnames)
    rows = [missing]
    if not keep:
        return rows
    features = np.stack([found[str(root / data.images[i])] for i in keep])
    scores = features @ classifier
    labels = [data.labels[i] for i in keep]
    for k in (1, 5):
        rows.append(
            MetricRow(
                "zero_shot",
                spec.name,
                f"top{k}",
                100 * metrics.topk_accuracy(scores, labels, k),
                100 * min(k, n_classes) / n_classes,
                len(keep),
            )
        )
    return rows


def retrieval(
    spec: ds.DatasetSpec, model, tokenizer, embedder: ImageEmbedder, device: str
) -> list[MetricRow]:
    data = ds.read_retrieval(Path(spec.annotation), spec.name)
    root = Path(spec.image_root)
    found, keep, missing = _available(
        "retrieval", spec.name, root, data.images, "caption", embedder
    )
    rows = [missing]
    if not keep:
        return rows
    new_index = {old: new for new, old in enumerate(keep)}
    caption_ids = [j for j, i in enumerate(data.image_of_caption) if i in new_index]
    images = np.stack([found[str(root / data.images[i])] for i in keep])
    texts = _texts(model, tokenizer, [data.captions[j] for j in caption_ids], device)
    owners = [new_index[data.image_of_caption[j]] for j in caption_ids]
    values = metrics.retrieval_metrics(images @ texts.T, owners)
    n_i, n_t = len(keep), len(caption_ids)
    for name, value in values.items():
        k = int(name.split("@")[1])
        per_image = n_t / n_i
        chance = min(1.0, k * per_image / n_t) if name.startswith("image") else min(1.0, k / n_i)
        rows.append(
            MetricRow(
                "retrieval",
                spec.name,
                name,
                100 * value,
                100 * chance,
                n_i if name.startswith("image") else n_t,
            )
        )
    return rows


def inquire(
    spec: ds.DatasetSpec,
    model,
    tokenizer,
    embedder: ImageEmbedder,
    device: str,
    chance_draws: int = 20,
) -> list[MetricRow]:
    queries = ds.read_inquire(
        Path(spec.annotation),
        Path(spec.candidates),
        Path(spec.relevance) if spec.relevance else None,
    )
    root = Path(spec.image_root)
    found = embedder.embed([root / p for q in queries for p in q.candidates], "caption")
    text = _texts(model, tokenizer, [q.text for q in queries], device)
    rng = random.Random(0)
    per_query, chance_per_query, missing = [], [], 0
    for q, query_text in zip(queries, text, strict=True):
        keep = [i for i, p in enumerate(q.candidates) if str(root / p) in found]
        missing += len(q.candidates) - len(keep)
        feats = np.stack([found[str(root / q.candidates[i])] for i in keep])
        relevant = [q.relevant[i] for i in keep]
        scores = feats @ query_text
        per_query.append(
            (q.supercategory, metrics.rerank_metrics(scores, relevant, q.missing_relevant))
        )
        draws = [
            metrics.rerank_metrics([rng.random() for _ in keep], relevant, q.missing_relevant)
            for _ in range(chance_draws)
        ]
        chance_per_query.append(
            (
                q.supercategory,
                {m: float(np.mean([d[m] for d in draws])) for m in ("AP", "nDCG", "MRR")},
            )
        )
    rows = [
        MetricRow(
            "inquire_rerank",
            spec.name,
            "missing_images",
            missing,
            0.0,
            sum(len(q.candidates) for q in queries),
        )
    ]
    groups = sorted({s for s, _ in per_query})
    for group in [None, *groups]:
        chosen = [m for s, m in per_query if group is None or s == group]
        base = [m for s, m in chance_per_query if group is None or s == group]
        suffix = "" if group is None else f"/{group}"
        for metric in ("AP", "nDCG", "MRR"):
            rows.append(
                MetricRow(
                    "inquire_rerank",
                    spec.name,
                    f"{metric}{suffix}",
                    100 * float(np.mean([m[metric] for m in chosen])),
                    100 * float(np.mean([m[metric] for m in base])),
                    len(chosen),
                )
            )
    return rows


RUNNERS = {"zero_shot": zero_shot, "retrieval": retrieval, "inquire_rerank": inquire}


def evaluate(
    checkpoint: str,
    specs: list[ds.DatasetSpec],
    log: Callable[[str], None],
    device: str | None = None,
) -> list[MetricRow]:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, preprocess, tokenizer = load_model(checkpoint, device)
    embedder = ImageEmbedder(model, preprocess, device)
    rows: list[MetricRow] = []
    for spec in specs:
        log(f"evaluating {spec.task} on {spec.name}")
        rows += RUNNERS[spec.task](spec, model, tokenizer, embedder, device)
    return rows
