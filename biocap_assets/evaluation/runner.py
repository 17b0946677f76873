"""Evaluate one model on a suite of datasets (runs in the ``evaluate`` worker).

By default every task follows BioCAP's own scripts (``train_and_eval/evaluation``):

- zero-shot (``zero_shot_iid.py``): the taxonomic image head (``visual.proj``, the first
  image output), a classifier of 81 templates (``a photo of {c}.`` then OpenAI's 80, the
  fork's ``openai_imagenet_template``), top-1/3/5; images opened as ``img_loader`` does
  (RGBA and palette images converted to RGB before the model's transform);
- retrieval (``retrieval_openclip.py``): the taxonomic head, each caption encoded as
  ``f"a photo of{caption}"`` (literally, no space), images opened ``.convert("RGB")``;
- INQUIRE-Rerank (``eval_rerank_with_clip.py``): the taxonomic head, the bare query text,
  images decoded from the released Parquet as ``datasets`` decodes them.

``EvalOptions`` names every choice that may differ (the caption head for retrieval and
INQUIRE, another retrieval template); each metric row records the head it used. Image
embeddings are computed once per image, loader and head, in batches. Every metric row
carries its chance level. Missing images are counted, reported, and left out.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from biocap_assets.common.files import UnsafePath, safe_join
from biocap_assets.common.images import open_image
from biocap_assets.evaluation import datasets as ds
from biocap_assets.evaluation import metrics
from biocap_assets.training import checkpoint as ckpt
from biocap_assets.training.model import CAPTION, HEADS, TAXONOMIC, DualProjectionCLIP

# The reference fork's ``open_clip_train.imagenet_zeroshot_data.openai_imagenet_template``:
# "a photo of {c}." followed by OpenAI's 80 ImageNet templates, as open_clip ships them.
REFERENCE_TEMPLATES = (lambda c: f"a photo of {c}.", *open_clip.OPENAI_IMAGENET_TEMPLATES)
# retrieval_openclip.py: tokenizer([f"a photo of{caption}"]), no space after "of".
REFERENCE_RETRIEVAL_TEMPLATE = "a photo of{caption}"


@dataclass(frozen=True)
class EvalOptions:
    head: str = TAXONOMIC
    """Image head for retrieval and INQUIRE; the reference uses the taxonomic one. Zero-shot
    always scores with the taxonomic head (its class names are taxonomic texts)."""
    retrieval_template: str = REFERENCE_RETRIEVAL_TEMPLATE
    """How a retrieval caption is written before encoding; ``{caption}`` is replaced."""
    precision: str = "reference"
    """reference: image embeddings under the autocast each script runs on this device
    (INQUIRE's bfloat16 on CPU included), so the numbers are the scripts'; fp32: none."""

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.precision not in ("reference", "fp32"):
            raise ValueError(f"precision must be reference or fp32, got {self.precision!r}")
        if "{caption}" not in self.retrieval_template:
            raise ValueError("retrieval_template must contain {caption}")


@dataclass
class MetricRow:
    task: str
    dataset: str
    metric: str
    value: float  # in percent
    chance: float  # in percent
    n: int
    head: str = TAXONOMIC
    # 95% bootstrap interval over the items behind the value (metrics.bootstrap_ci)
    ci_low: float = float("nan")
    ci_high: float = float("nan")


def measured(
    task: str, dataset: str, metric: str, items, chance: float, head: str = TAXONOMIC
) -> MetricRow:
    """A metric row from its per-item values (hits, or a query's AP...): the value is their
    mean, as the reference scripts compute it, with its bootstrap interval; in percent."""
    items = np.asarray(items, dtype=np.float64)
    value = float(items.mean()) if items.size else float("nan")
    low, high = metrics.bootstrap_ci(items)
    return MetricRow(
        task, dataset, metric, 100 * value, chance, len(items), head, 100 * low, 100 * high
    )


def _local_copy(url: str) -> Path:
    """An export folder on object storage, copied to a temporary local folder."""
    import tempfile

    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    target = Path(tempfile.mkdtemp(prefix="biocap-export-"))
    for name in fs.ls(path, detail=False):
        with fs.open(name, "rb") as src:
            (target / Path(name).name).write_bytes(src.read())
    return target


def load_model(path: str, device: str = "cpu"):
    """(model, eval transform, tokenizer) from an export folder (through stock open_clip's
    ``local-dir:``) or from an epoch checkpoint (``epoch_N.pt``)."""
    from biocap_assets.common.files import is_local, local_path

    if path.endswith(ckpt.EXPORT_DIR) or not path.endswith(".pt"):
        folder = Path(local_path(path)) if is_local(path) else _local_copy(path)
        return ckpt.load_export(folder, device)
    from upath import UPath

    from biocap_assets.training.model import create_model

    state = ckpt.load_state(UPath(path), device)
    if not state.get("model_name"):
        raise ckpt.CheckpointError(f"{path}: no model_name; evaluate its export folder instead")
    model, _, preprocess, tokenizer = create_model(state["model_name"], device=device)
    model.clip.load_state_dict(state["state_dict"])
    model.eval()
    return model, preprocess, tokenizer


def _open(data: bytes | Path) -> Image.Image:
    """Opened, not decoded; an image above the pixel cap is refused before decoding."""
    return open_image(data if isinstance(data, Path) else io.BytesIO(data))


# How each reference script opens an image before the model's transform.
def open_as_zero_shot(data: bytes | Path) -> Image.Image:
    image = _open(data)
    return image.convert("RGB") if image.mode in ("RGBA", "P") else image


def open_as_retrieval(data: bytes | Path) -> Image.Image:
    return _open(data).convert("RGB")


def open_as_datasets(data: bytes | Path) -> Image.Image:
    """As ``datasets``' Image feature decodes (2.19 and 5.x alike): load, then turn by the
    EXIF orientation when the image has one."""
    from PIL import ImageOps

    image = _open(data)
    image.load()
    if image.getexif().get(Image.ExifTags.Base.Orientation) is not None:
        image = ImageOps.exif_transpose(image)
    return image


@dataclass(frozen=True)
class Style:
    """How one reference script turns an image into a normalised embedding."""

    name: str
    opener: Callable[[bytes | Path], Image.Image]
    autocast_devices: tuple[str, ...]  # device types on which the script runs autocast
    in_place: bool  # ``x /= x.norm()`` (keeps a low-precision dtype) or F.normalize


STYLES = {
    # zero_shot_iid.py: precision "amp" -> torch.cuda.amp.autocast (a no-op on CPU)
    "zero_shot": Style("zero_shot", open_as_zero_shot, ("cuda",), in_place=False),
    # retrieval_openclip.py: no autocast, one image at a time
    "retrieval": Style("retrieval", open_as_retrieval, (), in_place=True),
    # eval_rerank_with_clip.py: torch.autocast(device), bfloat16 on CPU, float16 on CUDA
    "inquire": Style("inquire", open_as_datasets, ("cpu", "cuda"), in_place=True),
}


class ImageEmbedder:
    def __init__(
        self,
        model: DualProjectionCLIP,
        preprocess: Callable,
        device: str,
        batch_size: int = 128,
        precision: str = "reference",
    ):
        self.model, self.preprocess, self.device = model, preprocess, device
        self.batch_size = batch_size
        self.precision = precision
        self._cache: dict[tuple, np.ndarray] = {}
        self.missing: set[str] = set()

    @torch.no_grad()
    def _encode(self, images: list[Image.Image], head: str, style: Style) -> np.ndarray:
        tensors = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        device_type = torch.device(self.device).type
        autocast = self.precision == "reference" and device_type in style.autocast_devices
        context = torch.autocast(device_type) if autocast else contextlib.nullcontext()
        with context:
            features = self.model.encode_image(tensors, head, normalize=False)
            if style.in_place:
                features /= features.norm(dim=-1, keepdim=True)
            else:
                features = torch.nn.functional.normalize(features, dim=-1)
        return features.float().cpu().numpy()

    def embed_files(self, paths: list[Path], head: str, style: Style) -> dict[str, np.ndarray]:
        """Embeddings of the image files that exist and decode, by path string."""
        todo = [
            p
            for p in dict.fromkeys(str(p) for p in paths)
            if (p, style.name, head) not in self._cache and p not in self.missing
        ]
        for start in range(0, len(todo), self.batch_size):
            batch, images = [], []
            for path in todo[start : start + self.batch_size]:
                try:
                    image = style.opener(Path(path))
                    image.load()
                    images.append(image)
                    batch.append(path)
                except (FileNotFoundError, OSError, ValueError, Image.DecompressionBombError):
                    self.missing.add(path)
            if batch:
                features = self._encode(images, head, style)
                self._cache.update(
                    {(p, style.name, head): f for p, f in zip(batch, features, strict=True)}
                )
        return {
            str(p): self._cache[(str(p), style.name, head)]
            for p in paths
            if (str(p), style.name, head) in self._cache
        }

    def embed_encoded(
        self, items: list[tuple[int, bytes]], head: str, style: Style
    ) -> dict[int, np.ndarray]:
        images, ids = [], []
        for image_id, data in items:
            try:
                image = style.opener(data)
                image.load()
                images.append(image)
                ids.append(image_id)
            except (OSError, ValueError, Image.DecompressionBombError):
                self.missing.add(f"image {image_id}")
        return dict(zip(ids, self._encode(images, head, style), strict=True)) if images else {}


@torch.no_grad()
def encode_texts(
    model: DualProjectionCLIP, tokenizer, texts: list[str], device: str, autocast: bool = False
) -> np.ndarray:
    """Normalised text embeddings; equal strings are encoded once, so their scores tie
    exactly, as they do in the reference's one-at-a-time loop. ``autocast``: float16 on CUDA
    (INQUIRE's script encodes its queries under ``torch.cuda.amp.autocast``)."""
    unique = list(dict.fromkeys(texts))
    out = []
    on_cuda = torch.device(device).type == "cuda"
    for start in range(0, len(unique), 256):
        tokens = tokenizer(unique[start : start + 256]).to(device)
        context = torch.autocast("cuda") if autocast and on_cuda else contextlib.nullcontext()
        with context:
            features = model.encode_text(tokens, normalize=False)
            features /= features.norm(dim=-1, keepdim=True)
        out.append(features.float().cpu().numpy())
    if not out:
        return np.zeros((0, 1), dtype=np.float32)
    table = dict(zip(unique, np.concatenate(out), strict=True))
    return np.stack([table[t] for t in texts])


def image_paths(root: str | Path, names: list[str]) -> list[Path | None]:
    """Each annotation row's image file under ``root``; None for a name that would leave
    it (counted with the missing images, never read)."""
    paths: list[Path | None] = []
    for name in names:
        try:
            paths.append(safe_join(root, name))
        except UnsafePath:
            paths.append(None)
    return paths


def zero_shot(
    spec: ds.DatasetSpec, model, tokenizer, embedder: ImageEmbedder, device: str, options
) -> list[MetricRow]:
    data = ds.read_classification(Path(spec.annotation), spec.name, spec.label_format)
    paths = image_paths(spec.image_root, data.images)
    found = embedder.embed_files([p for p in paths if p], TAXONOMIC, STYLES["zero_shot"])
    keep = [i for i, p in enumerate(paths) if p and str(p) in found]
    rows = [
        MetricRow(
            "zero_shot",
            spec.name,
            "missing_images",
            len(data.images) - len(keep),
            0.0,
            len(data.images),
        )
    ]
    if not keep:
        return rows
    classifier = (
        open_clip.build_zero_shot_classifier(
            model,
            tokenizer,
            data.classnames,
            REFERENCE_TEMPLATES,
            num_classes_per_batch=10,
            device=device,
            use_tqdm=False,
        )
        .float()
        .cpu()
        .numpy()
    )
    features = np.stack([found[str(paths[i])] for i in keep])
    scores = features @ classifier
    labels = [data.labels[i] for i in keep]
    n_classes = len(data.classnames)
    for k in metrics.zero_shot_ks(n_classes):
        hits = metrics.topk_hits(scores, labels, k)
        rows.append(measured("zero_shot", spec.name, f"top{k}", hits, 100 * k / n_classes))
    return rows


def retrieval(
    spec: ds.DatasetSpec, model, tokenizer, embedder: ImageEmbedder, device: str, options
) -> list[MetricRow]:
    data = ds.read_retrieval(Path(spec.annotation), spec.name)
    paths = image_paths(spec.image_root, data.images)
    head = options.head
    found = embedder.embed_files([p for p in paths if p], head, STYLES["retrieval"])
    keep = [i for i, p in enumerate(paths) if p and str(p) in found]
    rows = [
        MetricRow(
            "retrieval",
            spec.name,
            "missing_images",
            len(data.images) - len(keep),
            0.0,
            len(data.images),
            head,
        )
    ]
    if not keep:
        return rows
    images = np.stack([found[str(paths[i])] for i in keep])
    texts = encode_texts(
        model,
        tokenizer,
        [options.retrieval_template.replace("{caption}", data.captions[i]) for i in keep],
        device,
    )
    n = len(keep)
    for name, hits in metrics.retrieval_hits(images @ texts.T).items():
        k = int(name.split("@")[1])
        rows.append(measured("retrieval", spec.name, name, hits, 100 * min(1.0, k / n), head))
    return rows


def inquire(
    spec: ds.DatasetSpec,
    model,
    tokenizer,
    embedder: ImageEmbedder,
    device: str,
    options,
    chance_draws: int = 20,
) -> list[MetricRow]:
    data = ds.read_inquire_rerank(Path(spec.annotation))
    head = options.head
    wanted = {i for q in data.queries for i in q.candidates}
    features: dict[int, np.ndarray] = {}
    for batch in data.iter_images(embedder.batch_size):
        todo = [(i, b) for i, b in batch if i in wanted and i not in features]
        features.update(embedder.embed_encoded(todo, head, STYLES["inquire"]))
    text = encode_texts(
        model,
        tokenizer,
        [q.text for q in data.queries],
        device,
        autocast=options.precision == "reference",
    )
    rng = random.Random(0)
    per_query, chance_per_query, missing = [], [], 0
    for q, query_text in zip(data.queries, text, strict=True):
        keep = [i for i, c in enumerate(q.candidates) if c in features]
        missing += len(q.candidates) - len(keep)
        if not keep:
            continue
        scores = np.stack([features[q.candidates[i]] for i in keep]) @ query_text
        relevant = [q.relevant[i] for i in keep]
        per_query.append((q.supercategory, metrics.rerank_metrics(scores, relevant)))
        draws = [
            metrics.rerank_metrics(np.array([rng.random() for _ in keep]), relevant)
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
            sum(len(q.candidates) for q in data.queries),
            head,
        )
    ]
    groups = sorted({s for s, _ in per_query})
    for group in [None, *groups]:
        chosen = [m for s, m in per_query if group is None or s == group]
        base = [m for s, m in chance_per_query if group is None or s == group]
        suffix = "" if group is None else f"/{group}"
        for metric in ("AP", "nDCG", "MRR"):
            chance = 100 * float(np.mean([m[metric] for m in base]))
            values = [m[metric] for m in chosen]
            rows.append(
                measured("inquire_rerank", spec.name, f"{metric}{suffix}", values, chance, head)
            )
    return rows


RUNNERS = {"zero_shot": zero_shot, "retrieval": retrieval, "inquire_rerank": inquire}


@dataclass
class Evaluation:
    rows: list[MetricRow]
    not_evaluated: dict[str, str]  # dataset -> why (no data here, an unreadable file...)


def evaluate(
    model_path: str,
    specs: list[ds.DatasetSpec],
    log: Callable[[str], None],
    device: str | None = None,
    options: EvalOptions | None = None,
) -> Evaluation:
    """Metric rows for every dataset that can be evaluated; each one that cannot is named,
    with why, and the others go on."""
    options = options or EvalOptions()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, preprocess, tokenizer = load_model(model_path, device)
    embedder = ImageEmbedder(model, preprocess, device, precision=options.precision)
    result = Evaluation([], {})
    for spec in specs:
        if spec.missing:
            log(f"not evaluating {spec.task} {spec.name}: {spec.missing}")
            result.not_evaluated[spec.name] = spec.missing
            continue
        log(f"evaluating {spec.task} on {spec.name}")
        try:
            result.rows += RUNNERS[spec.task](spec, model, tokenizer, embedder, device, options)
        except (ds.AnnotationError, FileNotFoundError) as exc:
            log(f"not evaluating {spec.task} {spec.name}: {exc}")
            result.not_evaluated[spec.name] = str(exc)
    return result


__all__ = ["CAPTION", "EvalOptions", "Evaluation", "MetricRow", "evaluate", "load_model"]
