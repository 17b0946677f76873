"""Eval sets of the demo world, written in the upstream annotation formats.

- zero-shot: Rare Species' ``metadata.csv`` (``,kingdom,phylum,cls,...,filepath,class``);
- retrieval: Cornell Bird's ``,id,source_url,captions,md5``, captions led by the name;
- INQUIRE: the queries CSV, ``inquire_annotations.csv`` (every relevant image) and the
  rerank set in the released INQUIRE-Rerank schema (100 candidates per query, with
  relevance and the image bytes), where some relevant images are left out of the 100 as
  in the real benchmark.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from biocap_assets.demo.species import DemoSpecies


@dataclass(frozen=True)
class PoolImage:
    image_id: str
    species: DemoSpecies
    background: str
    count: int
    inat24_id: int = 0


@dataclass(frozen=True)
class InquireQuery:
    query_id: int
    text: str
    supercategory: str
    category: str
    iconic_group: str
    relevant: Callable[[PoolImage], bool]


def _iconic(sp: DemoSpecies) -> str:
    return {
        "Aves": "Birds",
        "Insecta": "Insects",
        "Actinopterygii": "Fish",
        "Agaricomycetes": "Fungi",
        "Bivalvia": "Mollusks",
    }.get(sp.taxon.cls, "Plants")


def inquire_queries(species: tuple[DemoSpecies, ...]) -> list[InquireQuery]:
    """Queries over traits, context, behaviour and species, answerable from the pixels."""
    by_name = {s.taxon.common: s for s in species}
    queries: list[InquireQuery] = []

    def add(
        text: str, supercategory: str, category: str, group: str, rule: Callable[[PoolImage], bool]
    ) -> None:
        queries.append(InquireQuery(len(queries) + 1, text, supercategory, category, group, rule))

    for name in ("northern cardinal", "fly agaric", "ocellaris clownfish"):
        sp = by_name[name]
        add(
            f"A photo of a {name}",
            "Species",
            "Species identification",
            _iconic(sp),
            lambda im, sp=sp: im.species == sp,
        )
    add(
        "A spotted fish",
        "Appearance",
        "Pattern",
        "Fish",
        lambda im: im.species.shape == "fish" and im.species.pattern == "spotted",
    )
    add(
        "A yellow flower",
        "Appearance",
        "Colour",
        "Plants",
        lambda im: im.species.shape == "flower" and im.species.colour == "yellow",
    )
    add(
        "A red mushroom",
        "Appearance",
        "Colour",
        "Fungi",
        lambda im: im.species.shape == "mushroom" and im.species.colour == "red",
    )
    add(
        "A striped insect",
        "Appearance",
        "Pattern",
        "Insects",
        lambda im: im.species.shape == "insect" and im.species.pattern == "striped",
    )
    add(
        "A fish in open blue water",
        "Context",
        "Habitat",
        "Fish",
        lambda im: im.species.shape == "fish" and im.background == "water",
    )
    add(
        "A bird against dark surroundings at night",
        "Context",
        "Lighting",
        "Birds",
        lambda im: im.species.shape == "bird" and im.background == "dark",
    )
    add(
        "A mushroom among green foliage",
        "Context",
        "Habitat",
        "Fungi",
        lambda im: im.species.shape == "mushroom" and im.background == "foliage",
    )
    add(
        "Two fish swimming together",
        "Behavior",
        "Cooperative and Social Behaviors",
        "Fish",
        lambda im: im.species.shape == "fish" and im.count == 2,
    )
    add(
        "A pair of birds side by side",
        "Behavior",
        "Cooperative and Social Behaviors",
        "Birds",
        lambda im: im.species.shape == "bird" and im.count == 2,
    )
    return queries


def rerank_candidates(
    queries: list[InquireQuery],
    pool: list[PoolImage],
    rng: random.Random,
    n_candidates: int = 100,
    recall: float = 0.8,
) -> tuple[list[dict], list[dict]]:
    """Candidate rows (100 per query) and annotation rows (every relevant image).

    Only a ``recall`` share of each query's relevant images is among its
    candidates, as when INQUIRE's first-stage retrieval misses some.
    """
    candidates: list[dict] = []
    annotations: list[dict] = []
    for q in queries:
        relevant = [im for im in pool if q.relevant(im)]
        irrelevant = [im for im in pool if not q.relevant(im)]
        annotations += [
            {
                "query_id": q.query_id,
                "image_id": im.image_id,
                "image_path": f"{im.image_id}.jpg",
            }
            for im in relevant
        ]
        # a tiny world's pool may hold no image for a query: then it has none to find
        chosen = rng.sample(relevant, min(len(relevant), max(1, int(len(relevant) * recall))))
        chosen += rng.sample(irrelevant, n_candidates - len(chosen))
        rng.shuffle(chosen)
        candidates += [{"query": q, "image": im, "relevant": int(q.relevant(im))} for im in chosen]
    return candidates, annotations


def rerank_rows(
    candidates: list[dict], encoded: dict[str, bytes], rng: random.Random
) -> list[dict]:
    """Candidate rows in INQUIRE-Rerank's released columns."""
    rows = []
    for c in candidates:
        q, im = c["query"], c["image"]
        t = im.species.taxon
        folder = "_".join(r.capitalize() if i < 6 else r for i, r in enumerate(t.ranks) if r)
        rows.append(
            {
                "image": {"bytes": encoded[im.image_id], "path": f"{im.image_id}.jpg"},
                "query": q.text,
                "relevant": c["relevant"],
                "clip_score": round(rng.uniform(0.18, 0.34), 6),
                "inat24_image_id": im.inat24_id,
                "inat24_file_name": f"train/{folder}/{im.image_id}.jpg",
                "supercategory": q.supercategory,
                "category": q.category,
                "iconic_group": q.iconic_group,
                "inat24_species_id": abs(hash_int(t.binomial or t.family)) % 100_000,
                "inat24_species_name": t.binomial or t.family,
                "latitude": round(rng.uniform(-40, 60), 5),
                "longitude": round(rng.uniform(-120, 150), 5),
                "location_uncertainty": float(rng.randint(5, 500)),
                "date": f"2021-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "license": "CC-BY-NC",
                "rights_holder": "biocap demo world",
            }
        )
    return rows


def hash_int(text: str) -> int:
    """A stable integer of a string (Python's hash() changes between runs)."""
    return int(hashlib.md5(text.encode()).hexdigest()[:8], 16)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()
