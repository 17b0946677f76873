"""Readers for the real evaluation annotation formats, and suites of datasets.

Formats (see ../shared/reference-data): classification ``metadata.csv`` with
``filepath,class`` (NABirds, Meta-Album) or with ranks (Rare Species: ``cls``;
camera traps: lower-case ranks, ``common_name``); retrieval ``id,source_url,
captions,md5`` (Cornell Bird, PlantID); INQUIRE ``query_id,query_text,
supercategory,category,iconic_group`` with candidates and relevance.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RANKS = ("kingdom", "phylum", "cls", "order", "family", "genus", "species")
TASKS = ("zero_shot", "retrieval", "inquire_rerank")


class AnnotationError(ValueError):
    """An annotation file cannot be read; the message names the file and row."""


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError as exc:
        raise AnnotationError(f"{path}: no such annotation file") from exc


def _need(path: Path, rows: list[dict], columns: Iterable[str]) -> None:
    have = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in have]
    if rows and missing:
        raise AnnotationError(f"{path}: missing column(s) {', '.join(missing)}")


def taxonomic_label(ranks: dict[str, str], common: str | None) -> str:
    """``Kingdom Phylum Class Order Family Genus species with common name X``."""
    values = [ranks.get(r, "").strip() for r in RANKS]
    words = [v.capitalize() if i < 6 else v.lower() for i, v in enumerate(values) if v]
    label = " ".join(words)
    return f"{label} with common name {common}" if common else label


@dataclass
class ClassificationSet:
    name: str
    images: list[str]  # paths relative to the image root
    labels: list[int]
    classnames: list[str]  # the text each class is scored against
    class_ids: list[str]  # the class as written in the file


def read_classification(path: Path, name: str, label_format: str = "auto") -> ClassificationSet:
    """``label_format``: as_given (the class column), taxonomic (ranks + common name),
    or auto (taxonomic where the file has ranks)."""
    rows = _rows(path)
    _need(path, rows, ["filepath"])
    has_ranks = bool(rows) and all(r in rows[0] for r in RANKS)
    use_ranks = label_format == "taxonomic" or (label_format == "auto" and has_ranks)
    if use_ranks and not has_ranks:
        raise AnnotationError(f"{path}: label_format taxonomic needs the rank columns {RANKS}")
    classes: dict[str, int] = {}
    texts: list[str] = []
    images, labels = [], []
    for line, row in enumerate(rows, start=2):
        if use_ranks:
            text = taxonomic_label(row, (row.get("common_name") or "").strip() or None)
            key = text
        else:
            key = (row.get("class") or row.get("scientific_name") or "").strip()
            text = key
        if not key:
            raise AnnotationError(f"{path}: row {line} has no class")
        if key not in classes:
            classes[key] = len(classes)
            texts.append(text)
        images.append(row["filepath"])
        labels.append(classes[key])
    return ClassificationSet(name, images, labels, texts, list(classes))


@dataclass
class RetrievalSet:
    name: str
    images: list[str]
    captions: list[str]
    image_of_caption: list[int]
    md5: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)


def read_retrieval(path: Path, name: str) -> RetrievalSet:
    rows = _rows(path)
    _need(path, rows, ["id", "source_url", "captions"])
    image_index: dict[str, int] = {}
    images, captions, owners, md5, urls = [], [], [], {}, {}
    for row in rows:
        image = f"{row['id']}.jpg"
        if image not in image_index:
            image_index[image] = len(images)
            images.append(image)
            if row.get("md5"):
                md5[image] = row["md5"]
            urls[image] = row["source_url"]
        captions.append(row["captions"])
        owners.append(image_index[image])
    return RetrievalSet(name, images, captions, owners, md5, urls)


@dataclass
class InquireQuery:
    query_id: str
    text: str
    supercategory: str
    candidates: list[str]
    relevant: list[int]
    missing_relevant: int


def read_inquire(
    queries_path: Path, candidates_path: Path, annotations_path: Path | None
) -> list[InquireQuery]:
    queries = _rows(queries_path)
    _need(queries_path, queries, ["query_id", "query_text", "supercategory"])
    candidates = _rows(candidates_path)
    _need(candidates_path, candidates, ["query_id", "image_path", "relevant"])
    all_relevant: dict[str, set[str]] = {}
    if annotations_path is not None and annotations_path.exists():
        for row in _rows(annotations_path):
            all_relevant.setdefault(row["query_id"], set()).add(row["image_path"])
    by_query: dict[str, list[dict]] = {}
    for row in candidates:
        by_query.setdefault(row["query_id"], []).append(row)
    out = []
    for q in queries:
        rows = sorted(by_query.get(q["query_id"], []), key=lambda r: int(r.get("rank") or 0))
        paths = [r["image_path"] for r in rows]
        relevant = [int(r["relevant"]) for r in rows]
        listed = {p for p, rel in zip(paths, relevant, strict=True) if rel}
        missing = len(all_relevant.get(q["query_id"], set()) - listed)
        out.append(
            InquireQuery(
                q["query_id"], q["query_text"], q["supercategory"], paths, relevant, missing
            )
        )
    return out


@dataclass
class DatasetSpec:
    name: str
    task: str
    annotation: str
    image_root: str
    label_format: str = "auto"
    candidates: str = ""
    relevance: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise AnnotationError(f"dataset {self.name}: task must be one of {TASKS}")


def load_suite(path: Path) -> list[DatasetSpec]:
    """A YAML list of datasets (name, task, annotation, image_root, ...); paths relative
    to the file."""
    data = yaml.safe_load(path.read_text()) or {}
    base = path.parent
    specs = []
    for entry in data.get("datasets", []):
        entry = dict(entry)
        for key in ("annotation", "image_root", "candidates", "relevance"):
            if entry.get(key):
                entry[key] = str((base / entry[key]).resolve())
        specs.append(DatasetSpec(**entry))
    return specs


def suite_from_data_dir(data_dir: Path, image_root: Path) -> list[DatasetSpec]:
    """The upstream ``data/eval/`` layout, as is: one dataset per annotation file found."""
    specs: list[DatasetSpec] = []
    classification = data_dir / "classification_annotation"
    for meta in sorted(classification.rglob("*.csv")) if classification.exists() else []:
        rel = meta.relative_to(classification)
        name = (
            rel.parent.as_posix() if meta.name == "metadata.csv" else rel.with_suffix("").as_posix()
        )
        specs.append(
            DatasetSpec(
                name.replace("/", "_"), "zero_shot", str(meta), str(image_root / rel.parent)
            )
        )
    retrieval = data_dir / "retrieval_annotations"
    for captions in sorted(retrieval.glob("*.csv")) if retrieval.exists() else []:
        specs.append(
            DatasetSpec(captions.stem, "retrieval", str(captions), str(image_root / captions.stem))
        )
    inquire = data_dir / "inquire_annotations"
    queries = inquire / "inquire_queries_test.csv"
    candidates = inquire / "inquire_rerank_candidates.csv"
    if queries.exists() and candidates.exists():
        specs.append(
            DatasetSpec(
                "inquire",
                "inquire_rerank",
                str(queries),
                str(image_root / "inquire"),
                candidates=str(candidates),
                relevance=str(inquire / "inquire_annotations.csv"),
            )
        )
    return specs
