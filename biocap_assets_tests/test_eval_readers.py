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


def test_the_sensor_requests_an_evaluation_per_new_checkpoint(fresh_defs, monkeypatch):
    sensor = fresh_defs.resolve_sensor_def("evaluate_new_checkpoints")
    assert sensor.job_name == "reevaluate"
    instance = dg.DagsterInstance.ephemeral()

    @dg.asset(key="clip_checkpoint")
    def fake_checkpoint() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    dg.materialize([fake_checkpoint], instance=instance)
    context = dg.build_sensor_context(instance=instance, definitions=fresh_defs)
    result = sensor.evaluate_tick(context)
    assert len(result.run_requests) == 1
    context = dg.build_sensor_context(
        instance=instance, definitions=fresh_defs, cursor=result.cursor
    )
    assert sensor.evaluate_tick(context).run_requests == [], "nothing new, no run"


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
    assert {s.task for s in specs} == {"zero_shot", "retrieval"}
    assert all(s.image_root.startswith(str(tmp_path / "images")) for s in specs)
    assert not (tmp_path / "demo").exists(), "no demo world when real data is configured"
