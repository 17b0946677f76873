"""The report: the paper's two tables with the published rows and ours, in one HTML file."""

import re

import pandas as pd
import pytest

from biocap_assets.evaluation.report import (
    NOT_EVALUATED,
    PUBLISHED_RETRIEVAL,
    PUBLISHED_ZERO_SHOT,
    checkpoint_label,
    paper_tables,
    render,
)

# The upstream data/ folder's dataset names, as suite_from_data_dir names them.
UPSTREAM_TOP1 = {
    "nabirds": 50.0,
    "meta-album_PLK_Mini": 5.0,
    "meta-album_INS_Mini": 30.0,
    "meta-album_INS_2_Mini": 20.0,
    "camera_trap_ENA24-balanced": 10.0,
    "camera_trap_desert-lion-balanced": 20.0,
    "camera_trap_island-balanced": 30.0,
    "camera_trap_ohio-small-animals-balanced": 40.0,
    "camera_trap_orinoquia-balanced": 50.0,
    "meta-album_PLT_NET_Mini": 60.0,
    "meta-album_FNG_Mini": 15.0,
    "meta-album_PLT_VIL_Mini": 25.0,
    "meta-album_MED_LF_Mini": 35.0,
    "rare_species": 45.0,
    "meta-album_PLT_DOC_Mini": 99.0,  # evaluated, but not a column of the paper
}


def _rows(top1: dict[str, float], retrieval: bool = True) -> pd.DataFrame:
    rows = [
        {"task": "zero_shot", "dataset": d, "metric": m, "value": v, "chance": 1.0, "n": 10}
        for d, v in top1.items()
        for m in ("top1",)
    ]
    if retrieval:
        for group, value in (("Appearance", 31.0), ("Behavior", 32.0), ("Context", 33.0)):
            rows.append(
                {"task": "inquire_rerank", "dataset": "inquire_rerank", "metric": f"AP/{group}",
                 "value": value, "chance": 10.0, "n": 5}
            )  # fmt: skip
        for dataset in ("cornell_bird", "plantID"):
            for direction, value in (("image_to_text", 40.0), ("text_to_image", 41.0)):
                for k in (1, 10):
                    rows.append(
                        {"task": "retrieval", "dataset": dataset,
                         "metric": f"{direction}_R@{k}", "value": value + k, "chance": 0.1,
                         "n": 100}
                    )  # fmt: skip
    return pd.DataFrame(rows).assign(head="taxonomic")


def test_our_names_land_in_the_papers_columns():
    zero, retrieval = paper_tables(_rows(UPSTREAM_TOP1), pd.DataFrame(), "run-1")
    ours = zero[zero["source"] == "this platform"].iloc[0]
    assert ours["NABirds"] == 50.0 and ours["Rare Species"] == 45.0
    assert ours["Camera Trap"] == pytest.approx(30.0), "the mean of the five camera traps"
    assert ours["Mean"] == pytest.approx((50 + 5 + 30 + 20 + 30 + 60 + 15 + 25 + 35 + 45) / 10), (
        "PLT_DOC_Mini is not in the mean"
    )
    published = zero[zero["source"] == "published"].set_index("model")
    assert list(published.index) == ["CLIP", "SigLIP", "BioCLIP", "BioCAP"]
    assert published.loc["BioCAP", "Mean"] == 46.4 and published.loc["CLIP", "NABirds"] == 39.0
    mine = retrieval[retrieval["source"] == "this platform"].iloc[0]
    assert mine["Cornell Bird I2T"] == 50.0, "Recall@10"
    assert pd.isna(mine["INQUIRE-Rerank Species"]) and pd.isna(mine["Mean"]), "not evaluated"


def test_epochs_of_one_run_keep_their_own_rows_in_the_tables():
    history = pd.concat(
        [
            _rows(UPSTREAM_TOP1).assign(checkpoint="/s/checkpoints/run-1/epoch_1.pt"),
            _rows(UPSTREAM_TOP1).assign(checkpoint="/s/checkpoints/run-1/epoch_2.pt"),
        ]
    )
    current = "/s/checkpoints/run-1/epoch_3.pt"
    zero, _ = paper_tables(_rows(UPSTREAM_TOP1), history, checkpoint_label(current))
    ours = list(zero[zero["source"] == "this platform"]["model"])
    assert ours == [f"run-1/epoch_{i} (taxonomic head)" for i in (1, 2, 3)]


def test_the_published_means_are_the_means_of_their_columns():
    """A check on our transcription of the project page. One published mean is not the mean
    of its columns: SigLIP's zero-shot 32.3 (its ten columns average 31.46); the report
    shows it as published, with a note."""
    for table in (PUBLISHED_ZERO_SHOT, PUBLISHED_RETRIEVAL):
        for model, values in table.items():
            mean = sum(values[:-1]) / len(values[:-1])
            if table is PUBLISHED_ZERO_SHOT and model == "SigLIP":
                assert mean == pytest.approx(31.46) and values[-1] == 32.3
                continue
            assert mean == pytest.approx(values[-1], abs=0.051), model


def test_the_report_shows_both_tables_history_and_what_was_not_evaluated():
    history = _rows({"nabirds": 40.0}, retrieval=False).assign(checkpoint="runs/old/epoch_2.pt")
    markdown, page = render(
        "runs/new/epoch_8.pt",
        _rows(UPSTREAM_TOP1),
        history,
        {"inquire_rerank": "no local copy of INQUIRE-Rerank"},
        label="new",
    )
    assert "Zero-shot classification, top-1" in markdown and "Text-image retrieval" in markdown
    assert "imageomics.github.io/biocap" in markdown and "imageomics.github.io/biocap" in page
    assert "| old/epoch_2 (taxonomic head)" in markdown and "| new (taxonomic head)" in markdown
    assert NOT_EVALUATED in markdown and "no local copy of INQUIRE-Rerank" in page
    assert page.count("<table") >= 3 and "<th colspan='5'>Animals</th>" in page
    assert "<script" not in page and "src=" not in page, "one self-contained file"
    assert "Recall@10" in page and "plain mean of the five camera-trap sets" in page


def test_a_synthetic_suite_never_lands_in_the_papers_columns():
    """The demo's INQUIRE-Rerank is named like the real one; its numbers stay out."""
    zero, retrieval = paper_tables(_rows(UPSTREAM_TOP1), pd.DataFrame(), "demo", False)
    ours = retrieval[retrieval["source"] == "this platform"]
    assert len(ours) == 1 and ours.drop(columns=["model", "source"]).isna().all(axis=None)
    markdown, _ = render("demo.pt", _rows(UPSTREAM_TOP1), pd.DataFrame(), real_benchmarks=False)
    assert "This suite is synthetic" in markdown


def test_re_evaluation_replaces_its_own_rows_per_head(tmp_path):
    """Taxonomic, then the caption head twice: each (head, task, dataset) keeps one set of
    rows; the other head's rows and other checkpoints' are untouched."""
    from datetime import UTC, datetime

    import duckdb

    from biocap_assets.assets.evaluation import RESULT_COLUMNS, _write_results
    from biocap_assets.resources.duckdb import BiocapDuckDB

    db = BiocapDuckDB(database=str(tmp_path / "lake.duckdb"))

    def frame(checkpoint: str, head: str, value: float) -> pd.DataFrame:
        rows = _rows({"nabirds": value})
        rows.loc[rows["task"] != "zero_shot", "head"] = head
        return rows.assign(
            checkpoint=checkpoint,
            options="{}",
            evaluated_at=datetime.now(UTC),
            ci_low=None,
            ci_high=None,
        )[RESULT_COLUMNS]

    _write_results(db, frame("old.pt", "taxonomic", 10.0))
    _write_results(db, frame("new.pt", "taxonomic", 20.0))
    history = _write_results(db, frame("new.pt", "caption", 30.0))
    _write_results(db, frame("new.pt", "caption", 40.0))
    with duckdb.connect(str(tmp_path / "lake.duckdb"), read_only=True) as connection:
        counts = dict(
            connection.execute(
                "SELECT checkpoint || '/' || head || '/' || task, count(*) FROM eval_results "
                "GROUP BY ALL"
            ).fetchall()
        )
    per_evaluation = _rows({"nabirds": 1.0})["task"].value_counts().to_dict()
    assert counts["new.pt/caption/retrieval"] == per_evaluation["retrieval"]
    assert counts["new.pt/taxonomic/retrieval"] == per_evaluation["retrieval"], "kept"
    assert counts["new.pt/taxonomic/zero_shot"] == per_evaluation["zero_shot"], "not doubled"
    assert counts["old.pt/taxonomic/zero_shot"] == per_evaluation["zero_shot"]
    assert set(history["checkpoint"]) == {"old.pt"}
    # The report's rows: zero-shot with each retrieval head's numbers, one row per head.
    both = frame("new.pt", "caption", 30.0)
    zero, retrieval = paper_tables(both, pd.DataFrame(), "new")
    mine = retrieval[retrieval["source"] == "this platform"]
    assert list(mine["model"]) == ["new (caption head)"]
    assert mine.iloc[0]["Cornell Bird I2T"] == 50.0  # R@10 of the caption-head rows
    assert zero[zero["source"] == "this platform"].iloc[0]["NABirds"] == 30.0


def test_the_report_has_provenance_intervals_coverage_and_a_json_twin():
    import json

    from biocap_assets.evaluation.report import CI_COLUMN, report_data

    rows = _rows({"demo_species": 50.0}, retrieval=False)
    rows["ci_low"], rows["ci_high"] = 42.5, 57.25
    coverage = {"task": "zero_shot", "dataset": "demo_species", "metric": "missing_images",
                "value": 3.0, "chance": 0.0, "n": 13, "head": "taxonomic"}  # fmt: skip
    rows = pd.concat([rows, pd.DataFrame([coverage])], ignore_index=True)
    provenance = {
        "benchmarks": "demo (synthetic)",
        "model": "biocap-tiny",
        "preset": "demo",
        "epochs": 8,
        "code version": "biocap 0.1.0",
        "evaluated": "2026-11-29",
    }
    report = {"real_benchmarks": False, "provenance": provenance}
    markdown, page = render("demo.pt", rows, pd.DataFrame(), **report)
    assert "**Synthetic demo data**" in markdown and "Synthetic demo data" in page
    for key, value in provenance.items():
        assert f"| {key} | {value} |" in markdown
        assert f"<th>{key}</th><td>{value}</td>" in page
    assert "[42.50, 57.25]" in markdown and CI_COLUMN in page
    all_metrics = markdown.split("## All metrics")[1].split("## Coverage")[0]
    assert "missing_images" not in all_metrics, "coverage rows are not metrics"
    coverage_md = markdown.split("## Coverage")[1]
    assert re.search(r"\| zero_shot +\| demo_species +\| +3 \| +13 \| images", coverage_md)
    assert 'table border="1" class="dataframe metrics"' in page  # numbers right-aligned

    data = json.loads(json.dumps(report_data("demo.pt", rows, pd.DataFrame(), **report)))
    assert data["provenance"] == provenance and data["real_benchmarks"] is False
    (top1,) = data["headline"]
    assert (top1["value"], top1[CI_COLUMN], top1["unit"]) == (50.0, "[42.50, 57.25]", "images")
    assert data["coverage"] == [
        {"task": "zero_shot", "dataset": "demo_species", "missing": 3, "of": 13, "unit": "images"}
    ]
    assert all(m["metric"] != "missing_images" for m in data["metrics"])
