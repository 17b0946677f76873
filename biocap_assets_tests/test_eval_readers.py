"""Readers on the real annotation files (skipped without ../shared), suites, automation."""

import dagster as dg
import pytest

from biocap_assets.evaluation import datasets as ds

CLS = "biocap/data/classification_annotation"


def test_nabirds_and_meta_album_use_the_class_column(reference_data):
    nabirds = ds.read_classification(reference_data / CLS / "nabirds/metadata.csv", "nabirds")
    assert len(nabirds.images) == 48562 and len(nabirds.classnames) == 555
    assert "Oak Titmouse" in nabirds.classnames
    fungi = ds.read_classification(reference_data / CLS / "meta-album/FNG_Mini/metadata.csv", "fng")
    assert len(fungi.images) == 1000 and len(fungi.classnames) == 25


def test_rare_species_and_camera_traps_use_ranks_and_common_names(reference_data):
    rare = ds.read_classification(reference_data / CLS / "rare_species/metadata.csv", "rare")
    assert len(rare.images) == 11983 and len(rare.classnames) == 400
    assert (
        "Animalia Mollusca Bivalvia Unionida Unionidae Cyclonaias tuberculata with common "
        "name purple wartyback" in rare.classnames
    )
    as_given = ds.read_classification(
        reference_data / CLS / "rare_species/metadata.csv", "rare", label_format="as_given"
    )
    assert "Cyclonaias tuberculata" in as_given.classnames
    ena = ds.read_classification(reference_data / CLS / "camera_trap/ENA24-balanced.csv", "ena")
    assert len(ena.images) == 1120 and len(ena.classnames) == 20
    assert any(
        c.startswith("Animalia Chordata Mammalia Rodentia Sciuridae Tamias striatus")
        for c in ena.classnames
    ), "lower-case ranks are capitalised, species kept"


def test_retrieval_and_inquire_queries(reference_data):
    birds = ds.read_retrieval(
        reference_data / "biocap/data/retrieval_annotations/cornell_bird.csv", "cornell"
    )
    assert len(birds.captions) == 7007
    assert birds.captions[0].startswith("Aberts_Towhee, ")
    assert len(birds.md5) == len(birds.images)
    queries = reference_data / "INQUIRE/data/inquire/inquire_queries_test.csv"
    rows = ds._rows(queries)
    assert len(rows) == 200
    assert {r["supercategory"] for r in rows} == {"Appearance", "Behavior", "Context", "Species"}


def test_upstream_layout_becomes_a_suite(reference_data, tmp_path):
    specs = ds.suite_from_data_dir(reference_data / "biocap/data", tmp_path / "images")
    tasks = {s.name: s.task for s in specs}
    assert tasks["nabirds"] == "zero_shot" and tasks["cornell_bird"] == "retrieval"
    assert tasks["meta-album_FNG_Mini"] == "zero_shot"
    assert sum(t == "zero_shot" for t in tasks.values()) == 15  # 5 camera traps, 8 Meta-Album, 2
    # The upstream data/ folder has no INQUIRE-Rerank: it stays in the suite, marked missing.
    rerank = next(s for s in specs if s.task == "inquire_rerank")
    assert "no local copy of INQUIRE-Rerank" in rerank.missing
    assert "huggingface-cli download evendrow/INQUIRE-Rerank" in rerank.missing


def test_bad_annotation_files_are_named(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text("class\nA\n")
    with pytest.raises(ds.AnnotationError, match=r"metadata\.csv: missing column\(s\) filepath"):
        ds.read_classification(path, "x")
    with pytest.raises(ds.AnnotationError, match="no such annotation file"):
        ds.read_retrieval(tmp_path / "none.csv", "x")
    suite = tmp_path / "suite.yaml"
    suite.write_text("datasets:\n  - {name: x, task: ranking, annotation: a.csv, image_root: i}\n")
    with pytest.raises(ds.AnnotationError, match="task must be one of"):
        ds.load_suite(suite)


def test_an_annotation_file_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Spreadsheet programs save CSVs with a UTF-8 BOM; its first column must keep its name
    (read as '\ufefffilepath' it would be 'missing')."""
    plain, marked = tmp_path / "plain.csv", tmp_path / "marked.csv"
    text = "filepath,class\na.jpg,Corvus corax\nb.jpg,Pica pica\n"
    plain.write_text(text, encoding="utf-8")
    marked.write_text(text, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    one, two = ds.read_classification(plain, "x"), ds.read_classification(marked, "x")
    assert one == two and one.images == ["a.jpg", "b.jpg"]


def test_the_schedule_reruns_even_without_a_new_checkpoint(fresh_defs):
    from datetime import UTC, datetime

    schedule = fresh_defs.resolve_schedule_def("reevaluate_weekly")
    assert schedule.cron_schedule == "0 6 * * 1" and schedule.job_name == "reevaluate"
    first = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 23, 6, tzinfo=UTC))
    )
    second = schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 30, 6, tzinfo=UTC))
    )
    (a,), (b,) = first.run_requests, second.run_requests
    assert a.run_key != b.run_key, "each tick requests a run, checkpoint changed or not"


def test_a_new_checkpoint_is_evaluated_once_and_an_evaluated_one_not_again(fresh_defs, instance):
    """eval_reports' automation condition, evaluated as the daemon's sensor evaluates it."""
    sensor = fresh_defs.resolve_sensor_def("evaluate_new_checkpoints")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    @dg.asset(key="clip_checkpoint")
    def checkpoint() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    @dg.asset(key="eval_images")
    def images() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    @dg.asset(key="eval_reports", deps=["clip_checkpoint", "eval_images"])
    def reports() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    def requested(cursor=None):
        result = dg.evaluate_automation_conditions(
            defs=fresh_defs, instance=instance, asset_selection=dg.AssetSelection.assets(
                "eval_reports"), cursor=cursor
        )  # fmt: skip
        return result.get_requested_partitions(dg.AssetKey("eval_reports")), result.cursor

    # As biocap demo / train_and_evaluate leave it: both in one run. Nothing to do.
    dg.materialize([checkpoint, images, reports], instance=instance)
    wanted, cursor = requested()
    assert not wanted, "an evaluated checkpoint is not evaluated again"
    # A new checkpoint alone: evaluated once.
    dg.materialize([checkpoint], instance=instance)
    wanted, cursor = requested(cursor)
    assert wanted == {None}
    wanted, cursor = requested(cursor)
    assert not wanted, "requested once, not on every tick"


def test_the_eval_data_setting_selects_the_upstream_suite(reference_data, tmp_path):
    from biocap_assets.assets.evaluation import EvalConfig, resolve_suite
    from biocap_assets.resources import SourcesResource

    sources = SourcesResource(
        demo_root=str(tmp_path / "demo"),
        eval_data=str(reference_data / "biocap/data"),
        eval_images=str(tmp_path / "images"),
    )
    specs, label = resolve_suite(EvalConfig(), sources, None, None)
    assert label.startswith("upstream layout")
    assert {s.task for s in specs if not s.missing} == {"zero_shot", "retrieval"}
    assert [s.name for s in specs if s.missing] == ["inquire_rerank"]
    assert all(s.image_root.startswith(str(tmp_path / "images")) for s in specs if not s.missing)
    assert not (tmp_path / "demo").exists(), "no demo world when real data is configured"


def test_class_names_are_built_as_the_reference_builds_them(reference_data):
    """taxon_com for the camera traps and Rare Species, the class column for the others;
    against the reference's own naming_eval.to_classes where a checkout is given."""
    import os
    import sys

    import pandas as pd

    cases = {
        "camera_trap/ohio-small-animals-balanced.csv": "taxon_com",
        "rare_species/metadata.csv": "taxon_com",
        "meta-album/INS_Mini/metadata.csv": "asis",
        "nabirds/metadata.csv": "asis",
    }
    root = os.environ.get("BIOCAP_REFERENCE_REPO")
    for rel, text_type in cases.items():
        ours = ds.read_classification(reference_data / CLS / rel, rel)
        assert ours.text_type == text_type, rel
        if not root:
            continue
        sys.path.insert(0, os.path.join(root, "train_and_eval"))
        try:
            from imageomics import naming_eval
        finally:
            sys.path.pop(0)
        data = pd.read_csv(reference_data / CLS / rel, index_col=0).fillna("")
        theirs = list(pd.Series(naming_eval.to_classes(data, text_type)).unique())
        assert ours.classnames == theirs, rel
    ohio = ds.read_classification(
        reference_data / CLS / "camera_trap/ohio-small-animals-balanced.csv", "o"
    )
    assert (
        "Animalia Chordata Amphibia Anura Ranidae Lithobates catesbeianus with common name "
        "american bullfrog" in ohio.classnames
    )


def _rerank_fixture(folder, shards: int = 2):
    """A local copy of INQUIRE-Rerank as `huggingface-cli download` leaves it, written by
    Hugging Face's own datasets library in the released features."""
    import io

    import datasets
    from PIL import Image

    from biocap_assets_tests.test_demo_world import RELEASED_INQUIRE_FEATURES

    def jpeg(colour):
        out = io.BytesIO()
        Image.new("RGB", (16, 16), colour).save(out, "JPEG")
        return out.getvalue()

    rows = []
    for q, (query, group) in enumerate(
        (("a red bird", "Appearance"), ("a nesting bird", "Behavior"))
    ):
        for i in range(6):
            rows.append(
                {
                    "image": {"bytes": jpeg((40 * i, 10 * q, 90)), "path": None},
                    "query": query,
                    "relevant": int(i % 3 == 0),
                    "clip_score": 0.2,
                    "inat24_image_id": 100 * q + i,
                    "inat24_file_name": f"train/x/{q}_{i}.jpg",
                    "supercategory": group,
                    "category": "c",
                    "iconic_group": "Birds",
                    "inat24_species_id": 1,
                    "inat24_species_name": "Cardinalis cardinalis",
                    "latitude": 1.0,
                    "longitude": 2.0,
                    "location_uncertainty": 3.0,
                    "date": "2021-01-01",
                    "license": "cc-by-nc",
                    "rights_holder": "someone",
                }
            )
    dataset = datasets.Dataset.from_list(
        rows, features=datasets.Features(RELEASED_INQUIRE_FEATURES)
    )
    (folder / "data").mkdir(parents=True)
    for index in range(shards):
        dataset.shard(shards, index, contiguous=True).to_parquet(
            str(folder / "data" / f"test-{index:05d}-of-{shards:05d}.parquet")
        )
    return dataset


def test_inquire_rerank_is_read_from_its_released_parquet(tmp_path):
    dataset = _rerank_fixture(tmp_path / "INQUIRE-Rerank")
    data = ds.read_inquire_rerank(tmp_path / "INQUIRE-Rerank")
    assert [q.text for q in data.queries] == ["a nesting bird", "a red bird"], "np.unique order"
    bird = data.queries[1]
    assert bird.supercategory == "Appearance" and bird.candidates == list(range(6))
    assert bird.relevant == [1, 0, 0, 1, 0, 0]
    images = [item for batch in data.iter_images(batch_size=4) for item in batch]
    assert [i for i, _ in images] == dataset["inat24_image_id"]
    assert images[0][1] == dataset.with_format("arrow")["image"][0]["bytes"].as_py()
    # The hub cache layout (huggingface-cli download without --local-dir) is found too.
    snapshot = tmp_path / "hub/datasets--evendrow--INQUIRE-Rerank/snapshots/abc"
    snapshot.parent.mkdir(parents=True)
    (tmp_path / "INQUIRE-Rerank").rename(snapshot)
    assert ds.find_inquire_rerank([tmp_path / "nowhere", tmp_path / "hub"]) == tmp_path / "hub"


def test_inquire_rerank_is_read_from_a_datasets_cache(tmp_path):
    import datasets

    _rerank_fixture(tmp_path / "download")
    datasets.load_dataset(
        "parquet",
        data_files={"test": str(tmp_path / "download/data/test-*.parquet")},
        cache_dir=str(tmp_path / "cache"),
    )
    assert list((tmp_path / "cache").rglob("*-test.arrow")), "datasets wrote its Arrow cache"
    data = ds.read_inquire_rerank(tmp_path / "cache")
    assert [len(q.candidates) for q in data.queries] == [6, 6]
    assert sum(len(b) for b in data.iter_images()) == 12
    # Where eval_rerank_with_clip.py's load_dataset leaves it: HF_DATASETS_CACHE set to
    # the data folder's inquire/, the dataset under evendrow___inquire-rerank.
    import shutil

    (arrow,) = (tmp_path / "cache").rglob("*-test.arrow")
    target = tmp_path / "data/inquire/evendrow___inquire-rerank/default/0.0.0/abc"
    target.mkdir(parents=True)
    shutil.copy(arrow, target / "inquire-rerank-test.arrow")
    (spec,) = [s for s in ds.suite_from_data_dir(tmp_path / "data", tmp_path) if s.task ==
               "inquire_rerank"]  # fmt: skip
    assert not spec.missing and "evendrow___inquire-rerank" in spec.annotation


def test_a_foreign_or_absent_rerank_copy_is_named(tmp_path):
    with pytest.raises(
        ds.AnnotationError, match="huggingface-cli download evendrow/INQUIRE-Rerank"
    ):
        ds.read_inquire_rerank(tmp_path)
    bad = tmp_path / "data" / "test-00000-of-00001.parquet"
    bad.parent.mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"query": ["q"], "relevant": [1]}), bad)
    with pytest.raises(ds.AnnotationError, match="test-00000-of-00001.parquet"):
        ds.read_inquire_rerank(tmp_path)
