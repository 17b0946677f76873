"""Generate the demo world on disk, deterministically and atomically.

Same seed, same bytes: every random choice comes from one ``random.Random(seed)``
and files carry no timestamps. The world is built in a temporary sibling folder
and renamed into place at the end, so a killed generator never leaves a world
that looks complete; ``MANIFEST.json`` (written last) records each file's sha256.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from biocap_assets.demo import evalsets
from biocap_assets.demo.draw import BACKGROUND_PHRASES, BACKGROUNDS, draw_specimen, jpeg_bytes
from biocap_assets.demo.species import INCOMPLETE_ROWS, SPECIES, DemoSpecies
from biocap_assets.demo.wiki import build_wiki, visual_paragraphs
from biocap_assets.evaluation.datasets import RANKS as ANNOTATION_RANKS
from biocap_assets.evaluation.datasets import write_inquire_rerank_parquet
from biocap_assets.shards.naming import shard_filename
from biocap_assets.shards.tarwrite import DeterministicTarWriter
from biocap_assets.shards.texts import TEXT_KEYS, Taxon, sample_texts
from biocap_assets.taxonomy.names import RANKS

DEMO_SEED = 20251024
# Bump when the generator's output changes, so old worlds are rebuilt.
DEMO_VERSION = 6

CATALOG_COLUMNS = (
    "split",
    "treeoflife_id",
    "eol_content_id",
    "eol_page_id",
    "bioscan_part",
    "bioscan_filename",
    "inat21_filename",
    "inat21_cls_name",
    "inat21_cls_num",
    *RANKS,
    "common",
)


@dataclass(frozen=True)
class DemoSizes:
    """How big the world is; the defaults train a tiny CLIP in minutes on 2 cores."""

    train_per_species: int = 24
    val_per_species: int = 4
    train_shards: int = 4
    val_shards: int = 1
    zero_shot_per_species: int = 6
    retrieval_per_species: int = 3
    inquire_pool: int = 320
    image_size: int = 64

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"DemoSizes.{name} must be at least 1, got {value}")
        if self.inquire_pool < 110:
            raise ValueError(
                "DemoSizes.inquire_pool must be at least 110 (100 candidates "
                f"per query plus left-out relevant images), got {self.inquire_pool}"
            )


@dataclass(frozen=True)
class DemoWorld:
    """Paths into a generated demo world."""

    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.csv"

    @property
    def train_shards(self) -> list[Path]:
        return sorted((self.root / "shards" / "train").glob("shard-*.tar"))

    @property
    def train_shards_pattern(self) -> str:
        n = len(self.train_shards)
        return str(self.root / "shards" / "train" / f"shard-{{000000..{n - 1:06d}}}.tar")

    @property
    def val_shards(self) -> list[Path]:
        return sorted((self.root / "shards" / "val").glob("shard-*.tar"))

    @property
    def val_shards_pattern(self) -> str:
        n = len(self.val_shards)
        return str(self.root / "shards" / "val" / f"shard-{{000000..{n - 1:06d}}}.tar")

    @property
    def wiki_dir(self) -> Path:
        return self.root / "wiki"

    @property
    def data_dir(self) -> Path:
        """The upstream ``data/`` layout: ``eval/`` annotations and ``train/`` extras."""
        return self.root / "data"

    @property
    def format_examples(self) -> Path:
        return self.data_dir / "train" / "wiki_and_format_example" / "format_examples.parquet"

    @property
    def eval_images(self) -> Path:
        return self.root / "eval_images"

    @property
    def manifest(self) -> dict:
        return json.loads((self.root / "MANIFEST.json").read_text())


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _blank(taxon: Taxon, ranks: Iterable[str]) -> Taxon:
    field_of = {"class": "cls"}
    return replace(taxon, **{field_of.get(r, r): "" for r in ranks})


def _catalog_row(
    split: str, tol_id: str, taxon: Taxon, rng: random.Random, index: int
) -> dict[str, str]:
    row = dict.fromkeys(CATALOG_COLUMNS, "")
    row.update(split=split, treeoflife_id=tol_id, **taxon.by_rank(), common=taxon.common)
    source = rng.random()
    if taxon.kingdom == "Animalia" and taxon.phylum == "Arthropoda" and source < 0.4:
        row["bioscan_part"] = str(rng.randint(1, 113))
        row["bioscan_filename"] = f"{tol_id[:8]}.jpg"
    elif source < 0.5 and taxon.species:
        folder = "_".join([f"{index:05d}", *(r for r in taxon.ranks if r)])
        row["inat21_filename"] = f"train/{folder}/{tol_id}.jpg"
        row["inat21_cls_name"] = folder
        row["inat21_cls_num"] = str(index)
    else:
        row["eol_content_id"] = str(rng.randint(10_000_000, 99_999_999))
        row["eol_page_id"] = str(rng.randint(100_000, 9_999_999))
    # A few rows carry the case and whitespace noise real catalogs have.
    if rng.random() < 0.03:
        row["kingdom"] = f" {row['kingdom'].lower()} "
        row["genus"] = row["genus"] + " "
    return row


def _write_csv(
    path: Path, columns: Iterable[str], rows: Iterable[dict], index: bool = False
) -> None:
    """CSV as pandas writes it (``index=True`` gives the upstream unnamed index column)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = list(columns)
    writer.writerow(([""] if index else []) + columns)
    for i, row in enumerate(rows):
        writer.writerow(([i] if index else []) + [row[c] for c in columns])
    path.write_text(buffer.getvalue(), encoding="utf-8")


def _format_examples(species: tuple[DemoSpecies, ...]) -> list[dict[str, str]]:
    """Three example captions per class in the upstream ``1.… 2.… 3.…`` layout."""
    by_class: dict[str, list[DemoSpecies]] = {}
    for sp in species:
        by_class.setdefault(sp.taxon.cls, []).append(sp)
    rows = []
    for cls, members in sorted(by_class.items()):
        if len(members) < 2:  # the upstream file also has classes with no examples
            rows.append({"class": cls, "description": ""})
            continue
        lines = []
        for i, sp in enumerate((members * 3)[:3], start=1):
            t = sp.taxon
            lines.append(
                f"{i}.The {t.common.title()}, {t.binomial}, shows a {sp.colour} body "
                f"with {sp.pattern} markings, set against a natural background."
            )
        rows.append({"class": cls, "description": "\n".join(lines)})
    return rows


def _write_world(root: Path, seed: int, sizes: DemoSizes) -> dict:
    rng = random.Random(seed)
    species = SPECIES
    counts: dict[str, int] = {}

    # Catalog and training shards: one sample per catalog row of split train/val.
    samples: list[tuple[str, str, Taxon, DemoSpecies]] = []
    for sp in species:
        for split, n in (("train", sizes.train_per_species), ("val", sizes.val_per_species)):
            samples += [(split, _uuid(rng), sp.taxon, sp) for _ in range(n)]
    for index, blanked in INCOMPLETE_ROWS:
        sp = species[index]
        samples += [("train", _uuid(rng), _blank(sp.taxon, blanked), sp) for _ in range(3)]
    rng.shuffle(samples)

    rows = [
        _catalog_row(split, tol_id, taxon, rng, SPECIES.index(sp))
        for split, tol_id, taxon, sp in samples
    ]
    _write_csv(root / "catalog.csv", CATALOG_COLUMNS, rows)
    counts["catalog_rows"] = len(rows)

    train = [s for s in samples if s[0] == "train"]
    val = [s for s in samples if s[0] == "val"]
    for split, group, n_shards in (
        ("train", train, sizes.train_shards),
        ("val", val, sizes.val_shards),
    ):
        folder = root / "shards" / split
        folder.mkdir(parents=True)
        for shard in range(n_shards):
            with (
                (folder / shard_filename(shard)).open("wb") as f,
                DeterministicTarWriter(f) as writer,
            ):
                for _, tol_id, taxon, sp in group[shard::n_shards]:
                    image = draw_specimen(
                        sp, rng, size=sizes.image_size, background=rng.choice(list(BACKGROUNDS))
                    )
                    writer.write(
                        {"__key__": tol_id, "jpg": jpeg_bytes(image), **sample_texts(taxon)}
                    )
                if split == "train" and shard == 0:
                    # A sample whose text members name nothing (TreeOfLife-10M's writer
                    # never makes one; a damaged or foreign shard may): it is kept, and
                    # gets no caption.
                    image = draw_specimen(species[0], rng, size=sizes.image_size)
                    writer.write(
                        {"__key__": _uuid(rng), "jpg": jpeg_bytes(image)}
                        | dict.fromkeys(TEXT_KEYS, "")
                    )
        counts[f"{split}_samples"] = len(group) + (split == "train")  # + the nameless one
        counts[f"{split}_shards"] = n_shards

    # Offline wiki.
    pages = build_wiki(species, rng)
    (root / "wiki" / "pages").mkdir(parents=True)
    index = []
    for page in pages:
        (root / "wiki" / "pages" / f"{page.pageid}.html").write_text(page.html, encoding="utf-8")
        index.append(
            {
                "pageid": page.pageid,
                "title": page.title,
                "redirects_from": page.redirects_from,
                "disambiguation": page.disambiguation,
                "file": f"pages/{page.pageid}.html",
            }
        )
    (root / "wiki" / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    counts["wiki_pages"] = len(pages)

    # Format examples as upstream ships them now: Parquet, class and description strings.
    examples = _format_examples(species)
    (root / "data" / "train" / "wiki_and_format_example").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "class": pa.array([r["class"] for r in examples], pa.string()),
                "description": pa.array([r["description"] or None for r in examples], pa.string()),
            }
        ),
        root / "data" / "train" / "wiki_and_format_example" / "format_examples.parquet",
    )

    # Zero-shot set, Rare Species format. Hemihomonym twins are left out: their
    # "class" (the binomial) would name two different classes.
    binomials = [sp.taxon.binomial for sp in species]
    images = root / "eval_images"
    zs_rows = []
    for sp in species:
        if binomials.count(sp.taxon.binomial) > 1 and sp.wiki == "none":
            continue
        t = sp.taxon
        for _ in range(sizes.zero_shot_per_species):
            name = f"{_uuid(rng)}.jpg"
            data = jpeg_bytes(
                draw_specimen(
                    sp, rng, size=sizes.image_size, background=rng.choice(list(BACKGROUNDS))
                )
            )
            (images / "demo_species").mkdir(parents=True, exist_ok=True)
            (images / "demo_species" / name).write_bytes(data)
            zs_rows.append(
                {
                    **dict(zip(ANNOTATION_RANKS, t.ranks, strict=True)),
                    "common_name": t.common,
                    "filepath": name,
                    "class": t.binomial,
                }
            )
    _write_csv(
        root / "data" / "eval" / "classification_annotation" / "demo_species" / "metadata.csv",
        (*ANNOTATION_RANKS, "common_name", "filepath", "class"),
        zs_rows,
        index=True,
    )
    counts["zero_shot_images"] = len(zs_rows)

    # Retrieval set, Cornell Bird format. Every image gets its own caption (its species'
    # visual sentence and its own background), so Recall@k never hangs on a tie.
    rt_rows = []
    for sp in species:
        label = sp.taxon.common.title().replace(" ", "_")
        combos = [(p, b) for p in visual_paragraphs(sp) for b in sorted(BACKGROUNDS)]
        for paragraph, background in rng.sample(combos, sizes.retrieval_per_species):
            image_id = str(rng.randint(1_000_000, 99_999_999))
            data = jpeg_bytes(draw_specimen(sp, rng, size=sizes.image_size, background=background))
            (images / "demo_captions").mkdir(parents=True, exist_ok=True)
            (images / "demo_captions" / f"{image_id}.jpg").write_bytes(data)
            rt_rows.append(
                {
                    "id": image_id,
                    "source_url": f"demo_captions/{image_id}.jpg",
                    "captions": f"{label}, {paragraph} {BACKGROUND_PHRASES[background]}",
                    "md5": evalsets.md5_hex(data),
                }
            )
    captions = [r["captions"] for r in rt_rows]
    if len(set(captions)) != len(captions):
        raise AssertionError("demo retrieval captions must be unique")
    _write_csv(
        root / "data" / "eval" / "retrieval_annotations" / "demo_captions.csv",
        ("id", "source_url", "captions", "md5"),
        rt_rows,
        index=True,
    )
    counts["retrieval_pairs"] = len(rt_rows)

    # INQUIRE: the queries and annotations in the upstream data/ layout, and the rerank
    # set as evendrow/INQUIRE-Rerank is released (Parquet under data/, images inside).
    pool = []
    for index in range(sizes.inquire_pool):
        im = evalsets.PoolImage(
            _uuid(rng),
            rng.choice(species),
            rng.choice(list(BACKGROUNDS)),
            2 if rng.random() < 0.25 else 1,
            inat24_id=1_000_000 + index,
        )
        pool.append(im)
    encoded = {
        im.image_id: jpeg_bytes(
            draw_specimen(
                im.species, rng, size=sizes.image_size, background=im.background, count=im.count
            )
        )
        for im in pool
    }
    queries = evalsets.inquire_queries(species)
    candidates, annotations = evalsets.rerank_candidates(queries, pool, rng)
    inquire = root / "data" / "eval" / "inquire_annotations"
    _write_csv(
        inquire / "inquire_queries_test.csv",
        ("query_id", "query_text", "supercategory", "category", "iconic_group"),
        [
            {
                "query_id": q.query_id,
                "query_text": q.text,
                "supercategory": q.supercategory,
                "category": q.category,
                "iconic_group": q.iconic_group,
            }
            for q in queries
        ],
        index=True,
    )
    _write_csv(
        inquire / "inquire_annotations.csv", ("query_id", "image_id", "image_path"), annotations
    )
    write_inquire_rerank_parquet(
        root / "data" / "eval" / "inquire_rerank" / "data" / "test-00000-of-00001.parquet",
        evalsets.rerank_rows(candidates, encoded, rng),
    )
    counts["inquire_queries"] = len(queries)
    counts["inquire_pool_images"] = len(pool)

    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        files[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {
        "seed": seed,
        "version": DEMO_VERSION,
        "species": len(species),
        "counts": counts,
        "files": files,
    }
    (root / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def is_complete(root: Path, seed: int = DEMO_SEED) -> bool:
    try:
        manifest = json.loads((root / "MANIFEST.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("seed") == seed and manifest.get("version") == DEMO_VERSION


def generate_demo_world(
    root: str | os.PathLike,
    seed: int = DEMO_SEED,
    sizes: DemoSizes | None = None,
    force: bool = False,
) -> DemoWorld:
    """Build the world under ``root`` unless a complete one with this seed is there."""
    root = Path(root)
    if is_complete(root, seed) and not force:
        return DemoWorld(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        _write_world(staging, seed, sizes or DemoSizes())
        if root.exists():
            if is_complete(root, seed) and not force:
                return DemoWorld(root)  # another process finished first
            stale = root.with_name(f".{root.name}.stale-{os.getpid()}")
            os.rename(root, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DemoWorld(root)
