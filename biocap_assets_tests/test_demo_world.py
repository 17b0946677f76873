"""The demo world: deterministic, in the real formats, with traits that follow the species."""

import csv
import io
import json

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from biocap_assets.demo.species import SPECIES
from biocap_assets.demo.world import CATALOG_COLUMNS, DemoSizes, generate_demo_world
from biocap_assets.shards.texts import TEXT_KEYS

SMALL = DemoSizes(
    train_per_species=2,
    val_per_species=1,
    train_shards=2,
    zero_shot_per_species=1,
    retrieval_per_species=1,
    inquire_pool=120,
)


def test_same_seed_same_bytes(tmp_path):
    first = generate_demo_world(tmp_path / "a", seed=7, sizes=SMALL).manifest
    second = generate_demo_world(tmp_path / "b", seed=7, sizes=SMALL).manifest
    other = generate_demo_world(tmp_path / "c", seed=8, sizes=SMALL).manifest
    assert first["files"] == second["files"]
    assert first["files"]["catalog.csv"] != other["files"]["catalog.csv"]
    shard = "shards/train/shard-000000.tar"
    assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()


def test_generation_is_atomic_and_skipped_when_complete(tmp_path):
    root = tmp_path / "demo"
    world = generate_demo_world(root, seed=3, sizes=SMALL)
    marker = root / "catalog.csv"
    before = marker.stat().st_mtime_ns
    generate_demo_world(root, seed=3, sizes=SMALL)
    assert marker.stat().st_mtime_ns == before, "a complete world must not be rebuilt"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo")]
    # A world missing its manifest (a crash before the end) is rebuilt whole.
    (root / "MANIFEST.json").unlink()
    generate_demo_world(root, seed=3, sizes=SMALL)
    assert world.manifest["seed"] == 3


def test_catalog_has_every_treeoflife_column_and_noise(demo_world):
    with demo_world.catalog.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CATALOG_COLUMNS
    assert any(not r["species"] for r in rows), "rows with a missing rank"
    assert any(r["kingdom"] != r["kingdom"].strip() for r in rows), "whitespace variants"
    assert any(r["inat21_filename"] for r in rows) and any(r["eol_page_id"] for r in rows)
    binomials = {}
    for r in rows:
        if r["genus"].strip() and r["species"]:
            binomials.setdefault(f"{r['genus'].strip()} {r['species']}", set()).add(
                r["kingdom"].strip().capitalize()
            )
    assert {b for b, kingdoms in binomials.items() if len(kingdoms) > 1} >= {
        "Digitaria sanguinalis",
        "Digitalis purpurea",
        "Clavulina coralloides",
    }


def test_shards_read_back_with_webdataset_with_every_key(demo_world):
    catalog_ids = {r["treeoflife_id"] for r in csv.DictReader(demo_world.catalog.open())}
    seen, nameless = 0, []
    urls = [str(p) for p in demo_world.train_shards]
    for sample in wds.WebDataset(urls, shardshuffle=False):
        keys = set(sample) - {"__key__", "__url__", "__local_path__"}
        # webdataset lowercases suffixes: taxonTag.txt reads back as taxontag.txt
        assert keys == {"jpg", *(k.lower() for k in TEXT_KEYS)}
        if not sample["taxon.txt"]:  # the one sample whose text names nothing
            nameless.append(sample["__key__"])
            continue
        assert sample["__key__"] in catalog_ids
        assert sample["sci.txt"].decode().startswith("a photo of ")
        image = Image.open(io.BytesIO(sample["jpg"]))
        assert image.size == (64, 64)
        seen += 1
    assert seen + len(nameless) == demo_world.manifest["counts"]["train_samples"]
    assert len(nameless) == 1
    assert len(demo_world.train_shards) == 4 and len(demo_world.val_shards) == 1


def _mean_colour(jpeg: bytes) -> np.ndarray:
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float32)
    centre = pixels[16:48, 16:48].reshape(-1, 3)
    return centre.mean(axis=0)


def test_images_show_the_colour_of_their_species(demo_world):
    """A red species is redder than a blue one: the traits are in the pixels."""
    colours: dict[str, list[np.ndarray]] = {}
    names = {"Cardinalis cardinalis": "red", "Cyanocitta cristata": "blue"}
    for sample in wds.WebDataset([str(demo_world.train_shards[0])], shardshuffle=False):
        name = sample["scientific_name.txt"].decode()
        if name in names:
            colours.setdefault(names[name], []).append(_mean_colour(sample["jpg"]))
    red, blue = (np.mean(colours[c], axis=0) for c in ("red", "blue"))
    assert red[0] - red[2] > blue[0] - blue[2] + 40


def test_wiki_pages_cover_the_cases_the_crawler_must_handle(demo_world):
    index = json.loads((demo_world.wiki_dir / "index.json").read_text())
    titles = {p["title"] for p in index}
    assert sum(p["disambiguation"] for p in index) == 1
    assert any(p["redirects_from"] for p in index)
    assert "Lucilia sericata" not in titles  # a taxon with no page
    pages = {p["title"]: (demo_world.wiki_dir / p["file"]).read_text() for p in index}
    assert 'class="mw-heading mw-heading2"' in "".join(pages.values())
    assert 'class="mw-headline"' in "".join(pages.values())
    assert "Description" in pages["Cardinalis cardinalis"]
    assert "Description" not in pages["Esox lucius"] and "Appearance" not in pages["Esox lucius"]
    assert 'class="infobox biota"' in pages["Digitaria sanguinalis"]


def _released_inquire_features():
    """evendrow/INQUIRE-Rerank's features, as its dataset card's dataset_info lists them."""
    import datasets

    value = datasets.Value
    return {
        "image": datasets.Image(),
        "query": value("string"),
        "relevant": value("int64"),
        "clip_score": value("float64"),
        "inat24_image_id": value("int64"),
        "inat24_file_name": value("string"),
        "supercategory": value("string"),
        "category": value("string"),
        "iconic_group": value("string"),
        "inat24_species_id": value("int64"),
        "inat24_species_name": value("string"),
        "latitude": value("float64"),
        "longitude": value("float64"),
        "location_uncertainty": value("float64"),
        "date": value("string"),
        "license": value("string"),
        "rights_holder": value("string"),
    }


RELEASED_INQUIRE_FEATURES = _released_inquire_features()


def test_eval_sets_use_the_upstream_formats(demo_world, tmp_path):
    data = demo_world.data_dir / "eval"
    zero_shot = list(
        csv.DictReader((data / "classification_annotation/demo_species/metadata.csv").open())
    )
    assert list(zero_shot[0])[:4] == ["", "kingdom", "phylum", "cls"]
    assert all(
        (demo_world.eval_images / "demo_species" / r["filepath"]).is_file() for r in zero_shot
    )
    retrieval = list(csv.DictReader((data / "retrieval_annotations/demo_captions.csv").open()))
    assert list(retrieval[0]) == ["", "id", "source_url", "captions", "md5"]
    assert retrieval[0]["captions"].split(",")[0].replace("_", " ").lower() in {
        s.taxon.common.lower() for s in SPECIES
    }
    queries = list(csv.DictReader((data / "inquire_annotations/inquire_queries_test.csv").open()))
    assert {q["supercategory"] for q in queries} == {"Species", "Appearance", "Context", "Behavior"}
    import datasets

    # INQUIRE-Rerank as released: read back with Hugging Face's own `datasets` library.
    rerank = datasets.load_dataset(
        "parquet",
        data_files={"test": str(data / "inquire_rerank/data/test-*.parquet")},
        split="test",
        cache_dir=str(tmp_path / "hf"),
    )
    assert dict(rerank.features) == RELEASED_INQUIRE_FEATURES
    assert rerank[0]["image"].size == (64, 64), "the image decodes as datasets decodes it"
    per_query: dict[str, list[int]] = {}
    for query, relevant in zip(rerank["query"], rerank["relevant"], strict=True):
        per_query.setdefault(query, []).append(relevant)
    assert len(per_query) == len(queries)
    assert all(len(v) == 100 and 0 < sum(v) < 100 for v in per_query.values())
    annotated = list(csv.DictReader((data / "inquire_annotations/inquire_annotations.csv").open()))
    assert len(annotated) > sum(sum(v) for v in per_query.values()), (
        "some relevant images must lie outside the 100 candidates, as in INQUIRE"
    )
    captions = [r["captions"] for r in retrieval]
    assert len(set(captions)) == len(captions), "no ties in retrieval: one caption per image"


def test_format_examples_have_classes_and_an_empty_one(demo_world):
    import pyarrow.parquet as pq

    table = pq.read_table(demo_world.format_examples)
    assert table.schema.names == ["class", "description"], "upstream's Parquet columns"
    rows = table.to_pylist()
    assert {"Aves", "Insecta", "Bivalvia"} <= {r["class"] for r in rows}
    assert any(r["description"] is None for r in rows), "as upstream: a class without any"
    aves = next(r for r in rows if r["class"] == "Aves")["description"]
    assert aves.startswith("1.") and "\n2." in aves and "\n3." in aves


def test_bad_sizes_are_refused_by_name():
    with pytest.raises(ValueError, match="DemoSizes.train_shards must be at least 1"):
        DemoSizes(train_shards=0)


def test_a_crash_mid_generation_leaves_no_world(tmp_path, monkeypatch):
    import biocap_assets.demo.world as world

    def broken_wiki(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(world, "build_wiki", broken_wiki)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_demo_world(tmp_path / "demo", seed=1, sizes=SMALL)
    assert list(tmp_path.iterdir()) == [], "no partial world, no staging folder"
