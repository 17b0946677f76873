"""Readers for the real evaluation data formats, and suites of datasets.

Formats (see ../shared/reference-data):

- classification ``metadata.csv`` with ``filepath,class`` (NABirds, Meta-Album) or with
  ranks (Rare Species: ``cls``; camera traps: lower-case ranks, ``common_name``). Class
  names are built as BioCAP's ``imageomics/naming_eval.to_classes`` builds them for the
  script's ``--text_type``: ``asis`` (the class column) for NABirds and Meta-Album,
  ``taxon_com`` for the camera traps and Rare Species (``slurm/eval_zero_shot.sh``);
- retrieval ``id,source_url,captions,md5`` (Cornell Bird, PlantID): row i pairs image
  ``<id>.jpg`` with its caption, as ``retrieval_openclip.py`` reads them;
- INQUIRE-Rerank as released on the Hugging Face hub (``evendrow/INQUIRE-Rerank``): Parquet
  files ``data/test-*.parquet`` (what ``huggingface-cli download`` leaves), or the Arrow
  files ``datasets.load_dataset`` caches; one row per (query, candidate image) with
  ``image`` (``{bytes, path}``), ``query``, ``relevant``, ``inat24_image_id``,
  ``supercategory`` and more. Read with pyarrow, one record batch at a time.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from biocap_assets.taxonomy.names import RANKS as TAXON_RANKS

# The annotation files' rank columns: the seven ranks, "class" spelt "cls" as upstream.
RANKS = tuple("cls" if r == "class" else r for r in TAXON_RANKS)
TASKS = ("zero_shot", "retrieval", "inquire_rerank")
# naming_eval.to_classes's text types; ``auto``: taxon_com where the file has ranks.
TEXT_TYPES = ("asis", "sci", "taxon", "com", "sci_com", "taxon_com")
_ALIASES = {"as_given": "asis", "taxonomic": "taxon_com"}
INQUIRE_RERANK_REPO = "evendrow/INQUIRE-Rerank"
INQUIRE_COLUMNS = ("query", "relevant", "inat24_image_id", "supercategory")
# The released features (the dataset card's ``dataset_info``), in order; "image" is the
# ``datasets`` Image feature, stored in Parquet as struct<bytes: binary, path: string>.
INQUIRE_RERANK_FEATURES = (
    ("image", "image"),
    ("query", "string"),
    ("relevant", "int64"),
    ("clip_score", "float64"),
    ("inat24_image_id", "int64"),
    ("inat24_file_name", "string"),
    ("supercategory", "string"),
    ("category", "string"),
    ("iconic_group", "string"),
    ("inat24_species_id", "int64"),
    ("inat24_species_name", "string"),
    ("latitude", "float64"),
    ("longitude", "float64"),
    ("location_uncertainty", "float64"),
    ("date", "string"),
    ("license", "string"),
    ("rights_holder", "string"),
)


def write_inquire_rerank_parquet(path: Path, rows: list[dict]) -> None:
    """Rows in the released schema, as ``datasets``' ``to_parquet`` writes them: the Arrow
    schema plus the ``huggingface`` metadata that tells ``datasets`` its features (the
    demo world writes its INQUIRE-Rerank with this; tests check it against ``datasets``)."""
    import json

    import pyarrow as pa

    from biocap_assets.common.files import write_parquet

    arrow_types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {
        name: {"_type": "Image"} if kind == "image" else {"dtype": kind, "_type": "Value"}
        for name, kind in INQUIRE_RERANK_FEATURES
    }
    schema = pa.schema(
        [(n, image_type if k == "image" else arrow_types[k]) for n, k in INQUIRE_RERANK_FEATURES],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    write_parquet(str(path), pa.Table.from_pylist(rows, schema=schema))


class AnnotationError(ValueError):
    """An annotation file cannot be read; the message names the file and row."""


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError as exc:
        raise AnnotationError(f"{path}: no such annotation file") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise AnnotationError(f"{path}: not a UTF-8 CSV file ({exc})") from exc


def _need(path: Path, rows: list[dict], columns: Iterable[str]) -> None:
    have = set(rows[0]) if rows else set()
    missing = [c for c in columns if c not in have]
    if rows and missing:
        raise AnnotationError(f"{path}: missing column(s) {', '.join(missing)}")


# -- class names, as naming_eval.Taxon builds them ----------------------------------------


def scientific_name(row: dict[str, str]) -> str | None:
    genus, species = row.get("genus", ""), row.get("species", "")
    subspecies = row.get("subspecies", "")
    if subspecies:
        return f"{genus.capitalize()} {species.lower()} {subspecies.lower()}"
    if species:
        return f"{genus.capitalize()} {species.lower()}"
    if genus:
        return genus.capitalize()
    return None


def taxonomic_name(row: dict[str, str]) -> str:
    """The seven ranks joined by single spaces, empty ranks included (as the reference)."""
    values = [row.get(r, "") for r in RANKS]
    subspecies = row.get("subspecies", "")
    if not row.get("kingdom", ""):
        words = [values[5].capitalize(), values[6].lower()]
    else:
        words = [v.capitalize() for v in values[:6]] + [values[6].lower()]
    if subspecies:
        words.append(subspecies.lower())
    return " ".join(words)


def class_name(row: dict[str, str], text_type: str) -> str | None:
    """The text a row's class is scored against, for one of ``TEXT_TYPES``."""
    common = row.get("common_name", "")
    if text_type == "asis":
        return row.get("class")
    if text_type == "sci":
        return scientific_name(row)
    if text_type == "taxon":
        return taxonomic_name(row)
    if text_type == "com":
        return common
    if text_type == "sci_com":
        sci = scientific_name(row)
        return sci if not common or sci is None else f"{sci} with common name {common}"
    if text_type == "taxon_com":
        taxon = taxonomic_name(row)
        return taxon if not common else f"{taxon} with common name {common}"
    raise AnnotationError(f"text type {text_type!r} is not one of {', '.join(TEXT_TYPES)}")


def resolve_text_type(label_format: str, has_ranks: bool) -> str:
    text_type = _ALIASES.get(label_format, label_format)
    if text_type == "auto":
        return "taxon_com" if has_ranks else "asis"
    if text_type not in TEXT_TYPES:
        raise AnnotationError(
            f"label_format {label_format!r} is not auto or one of {', '.join(TEXT_TYPES)}"
        )
    return text_type


@dataclass
class ClassificationSet:
    name: str
    images: list[str]  # paths relative to the image root
    labels: list[int]
    classnames: list[str]  # the text each class is scored against, in first-seen order
    text_type: str = "asis"


def read_classification(path: Path, name: str, label_format: str = "auto") -> ClassificationSet:
    """``label_format``: auto (taxon_com where the file has the rank columns, else asis) or
    one of ``TEXT_TYPES``. Classes are numbered in order of first appearance, as
    ``DatasetFromFile`` numbers ``data['class'].unique()``."""
    rows = _rows(path)
    _need(path, rows, ["filepath"])
    has_ranks = bool(rows) and all(r in rows[0] for r in RANKS)
    text_type = resolve_text_type(label_format, has_ranks)
    if text_type != "asis" and not has_ranks:
        raise AnnotationError(f"{path}: text type {text_type} needs the rank columns {RANKS}")
    if text_type == "asis":
        _need(path, rows, ["class"])
    classes: dict[str, int] = {}
    images, labels = [], []
    for line, row in enumerate(rows, start=2):
        text = class_name(row, text_type)
        if not text:
            raise AnnotationError(f"{path}: row {line} has no class ({text_type})")
        classes.setdefault(text, len(classes))
        images.append(row["filepath"])
        labels.append(classes[text])
    return ClassificationSet(name, images, labels, list(classes), text_type)


@dataclass
class RetrievalSet:
    """Row i: image ``images[i]`` and its caption ``captions[i]``."""

    name: str
    images: list[str]
    captions: list[str]
    md5: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)


def read_retrieval(path: Path, name: str) -> RetrievalSet:
    rows = _rows(path)
    _need(path, rows, ["id", "source_url", "captions"])
    images, captions, md5, urls = [], [], {}, {}
    for line, row in enumerate(rows, start=2):
        if not row["id"]:
            raise AnnotationError(f"{path}: row {line} has no id")
        image = f"{row['id']}.jpg"
        images.append(image)
        captions.append(row["captions"])
        if row.get("md5"):
            md5[image] = row["md5"]
        urls[image] = row["source_url"]
    return RetrievalSet(name, images, captions, md5, urls)


# -- INQUIRE-Rerank as released ------------------------------------------------------------


def inquire_rerank_files(root: Path, split: str = "test") -> list[Path]:
    """The split's files in a local copy of ``evendrow/INQUIRE-Rerank``: Parquet shards
    (``data/test-00000-of-00004.parquet``, from ``huggingface-cli download`` or the hub
    cache) or, failing those, the Arrow files of a ``datasets`` cache."""
    root = Path(root)
    parquet = sorted(p for p in root.rglob(f"{split}-*.parquet") if p.is_file())
    if parquet:
        by_name: dict[str, Path] = {}
        for p in parquet:  # a hub cache may hold several snapshots: keep the newest
            if p.name not in by_name or p.stat().st_mtime > by_name[p.name].stat().st_mtime:
                by_name[p.name] = p
        return [by_name[n] for n in sorted(by_name)]
    arrow = re.compile(rf".*-{re.escape(split)}(-\d+-of-\d+)?\.arrow$")
    return sorted(p for p in root.rglob("*.arrow") if arrow.match(p.name))


def _names(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.read_schema(path).names
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).schema.names
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).schema.names


def _open_table_batches(path: Path, columns: list[str], batch_size: int = 256):
    missing = [c for c in columns if c not in _names(path)]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {', '.join(missing)}")
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)
        return
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i).select(columns)
            return
        for batch in reader:
            yield batch.select(columns)


@dataclass
class InquireQuery:
    text: str
    supercategory: str
    candidates: list[int]  # inat24_image_id, in the dataset's row order
    relevant: list[int]


@dataclass
class InquireRerank:
    """A local copy of INQUIRE-Rerank: queries with their candidates, images on demand."""

    files: list[Path]
    queries: list[InquireQuery]

    def iter_images(self, batch_size: int = 256) -> Iterator[list[tuple[int, bytes]]]:
        """Batches of (inat24_image_id, encoded image bytes), in file order."""
        for path in self.files:
            for batch in _open_table_batches(path, ["inat24_image_id", "image"], batch_size):
                ids = batch.column("inat24_image_id").to_pylist()
                images = batch.column("image").to_pylist()
                out = []
                for image_id, image in zip(ids, images, strict=True):
                    data = image.get("bytes") if isinstance(image, dict) else None
                    if not data and isinstance(image, dict) and image.get("path"):
                        candidate = path.parent / image["path"]
                        data = candidate.read_bytes() if candidate.is_file() else None
                    if not data:
                        raise AnnotationError(f"{path}: image {image_id} has no bytes")
                    out.append((int(image_id), data))
                yield out


def read_inquire_rerank(root: Path, split: str = "test") -> InquireRerank:
    """Queries in ``np.unique(dataset['query'])`` order (sorted), each with its rows in
    dataset order, as ``eval_rerank_with_clip.py`` selects them."""
    files = inquire_rerank_files(root, split)
    if not files:
        raise AnnotationError(
            f"{root}: no INQUIRE-Rerank {split} split here (looked for {split}-*.parquet "
            f"and *-{split}.arrow); get it with `huggingface-cli download "
            f"{INQUIRE_RERANK_REPO} --repo-type dataset --local-dir {root}`"
        )
    rows: dict[str, InquireQuery] = {}
    for path in files:
        try:
            batches = list(_open_table_batches(path, list(INQUIRE_COLUMNS), batch_size=4096))
        except AnnotationError:
            raise
        except Exception as exc:  # pyarrow raises its own types for a foreign file
            raise AnnotationError(f"{path}: not INQUIRE-Rerank's format ({exc})") from exc
        if "image" not in _names(path):
            raise AnnotationError(f"{path}: missing column(s) image")
        for batch in batches:
            columns = {c: batch.column(c).to_pylist() for c in INQUIRE_COLUMNS}
            for i, query in enumerate(columns["query"]):
                relevant = columns["relevant"][i]
                if query is None or relevant not in (0, 1):
                    raise AnnotationError(
                        f"{path}: a row of query {query!r} has relevant={relevant!r} (0 or 1)"
                    )
                entry = rows.setdefault(
                    query, InquireQuery(query, columns["supercategory"][i] or "", [], [])
                )
                entry.candidates.append(int(columns["inat24_image_id"][i]))
                entry.relevant.append(int(relevant))
    return InquireRerank(files, [rows[q] for q in sorted(rows)])


def find_inquire_rerank(candidates: Iterable[str | os.PathLike | None]) -> Path | None:
    """The first of ``candidates`` that holds an INQUIRE-Rerank test split."""
    for candidate in candidates:
        if candidate and Path(candidate).is_dir() and inquire_rerank_files(Path(candidate)):
            return Path(candidate)
    return None


def datasets_cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Where ``datasets.load_dataset("evendrow/INQUIRE-Rerank")`` keeps its Arrow files:
    under ``cache``, else ``$HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``."""
    if cache is None:
        home = os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface")
        cache = os.environ.get("HF_DATASETS_CACHE") or os.path.join(home, "datasets")
    return Path(cache) / "evendrow___inquire-rerank"


def hub_cache_dir(repo: str = INQUIRE_RERANK_REPO) -> Path:
    """Where ``huggingface-cli download`` (no ``--local-dir``) puts a dataset repository."""
    home = os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface")
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(home, "hub")
    return Path(hub) / f"datasets--{repo.replace('/', '--')}"


# -- suites ---------------------------------------------------------------------------------


@dataclass
class DatasetSpec:
    name: str
    task: str
    annotation: str  # a CSV file; for inquire_rerank, the folder of the local copy
    image_root: str
    label_format: str = "auto"
    missing: str = ""  # why this dataset cannot be evaluated here (then it is reported)

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
        for key in ("annotation", "image_root"):
            if entry.get(key):
                entry[key] = str((base / entry[key]).resolve())
        try:
            specs.append(DatasetSpec(**entry))
        except TypeError as exc:
            raise AnnotationError(f"{path}: dataset {entry.get('name', '?')}: {exc}") from exc
    return specs


def suite_from_data_dir(
    data_dir: Path, image_root: Path, inquire_rerank: str | os.PathLike | None = None
) -> list[DatasetSpec]:
    """The upstream ``data/`` layout, as is: one dataset per annotation file found, and
    INQUIRE-Rerank from the first of: ``inquire_rerank``, ``<data_dir>/inquire_rerank``,
    the ``datasets`` cache the reference script fills (``<data_dir>/inquire``, its
    ``HF_DATASETS_CACHE``), the Hugging Face hub cache, the default ``datasets`` cache.
    Without a copy of it the suite still lists it, marked missing, so it is reported."""
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
    places = [
        inquire_rerank,
        data_dir / "inquire_rerank",
        datasets_cache_dir(data_dir / "inquire"),
        hub_cache_dir(),
        datasets_cache_dir(),
    ]
    found = find_inquire_rerank(places)
    specs.append(
        DatasetSpec(
            "inquire_rerank",
            "inquire_rerank",
            str(found or ""),
            "",
            missing=""
            if found
            else (
                "no local copy of INQUIRE-Rerank (looked in "
                + ", ".join(str(p) for p in places if p)
                + f"); download it with `huggingface-cli download {INQUIRE_RERANK_REPO} "
                "--repo-type dataset --local-dir <dir>` and set BIOCAP_INQUIRE_RERANK=<dir>"
            ),
        )
    )
    return specs
