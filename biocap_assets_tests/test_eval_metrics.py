"""Evaluation metrics against hand-computed cases and an independent implementation."""

import math
import random

import numpy as np
import pytest

from biocap_assets.evaluation.metrics import (
    recall_at_k,
    rerank_metrics,
    retrieval_metrics,
    topk_accuracy,
)


def test_topk_accuracy_hand_cases():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
    assert topk_accuracy(scores, [0, 2, 1], k=1) == pytest.approx(2 / 3)  # tie: lower index
    assert topk_accuracy(scores, [1, 0, 2], k=2) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, [1, 0, 2], k=10) == 1.0  # k larger than the classes
    assert math.isnan(topk_accuracy(np.zeros((0, 3)), [], k=1))


def test_recall_hand_cases():
    sim = np.array([[0.9, 0.8, 0.1], [0.2, 0.1, 0.7]])
    assert recall_at_k(sim, [{1}, {2}], 1) == 0.5
    assert recall_at_k(sim, [{1}, {2}], 2) == 1.0
    assert recall_at_k(sim, [set(), {2}], 5) == 0.5  # a query with no positive never hits
    out = retrieval_metrics(np.array([[0.9, 0.2, 0.3], [0.1, 0.8, 0.95]]), [0, 1, 1])
    assert out["image_to_text_R@1"] == 1.0  # image 1's best text (2) is one of its own
    assert out["text_to_image_R@1"] == 1.0
    assert out["text_to_image_R@5"] == 1.0


def test_rerank_hand_cases():
    perfect = rerank_metrics([0.9, 0.8, 0.1, 0.0], [1, 1, 0, 0])
    assert perfect == {"AP": 1.0, "nDCG": 1.0, "MRR": 1.0}
    worst = rerank_metrics([0.9, 0.8, 0.1, 0.0], [0, 0, 1, 1])
    assert worst["MRR"] == pytest.approx(1 / 3)
    assert worst["AP"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert rerank_metrics([0.5, 0.4], [0, 0]) == {"AP": 0.0, "nDCG": 0.0, "MRR": 0.0}
    everything = rerank_metrics([0.3, 0.2, 0.1], [1, 1, 1])
    assert everything == {"AP": 1.0, "nDCG": 1.0, "MRR": 1.0}
    # Two relevant images were not among the candidates: AP and nDCG cannot reach 1.
    missing = rerank_metrics([0.9, 0.1], [1, 0], missing_relevant=2)
    assert missing["AP"] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert missing["nDCG"] < 1 and missing["MRR"] == 1.0


def _independent(scores, relevant, missing):
    """AP, nDCG and MRR written out from their definitions."""
    ranked = [
        r
        for _, _, r in sorted(
            zip(scores, range(len(scores)), relevant, strict=True), key=lambda t: (-t[0], t[1])
        )
    ] + [1] * missing
    hits, precisions = 0, []
    for i, rel in enumerate(ranked, start=1):
        if rel:
            hits += 1
            precisions.append(hits / i)
    ap = sum(precisions) / len(precisions) if precisions else 0.0
    dcg = sum(rel / math.log2(i + 1) for i, rel in enumerate(ranked, start=1))
    ideal = sum(1 / math.log2(i + 1) for i in range(1, sum(ranked) + 1))
    first = next((i for i, rel in enumerate(ranked, start=1) if rel), None)
    return {
        "AP": ap,
        "nDCG": dcg / ideal if ideal else 0.0,
        "MRR": 1 / first if first and first <= len(scores) else 0.0,
    }


@pytest.mark.parametrize("seed", range(25))
def test_rerank_matches_an_independent_implementation(seed):
    rng = random.Random(seed)
    n = rng.randint(5, 100)
    scores = [rng.random() for _ in range(n)]
    relevant = [int(rng.random() < 0.2) for _ in range(n)]
    relevant[rng.randrange(n)] = 1
    missing = rng.choice([0, 0, 1, 3])
    ours = rerank_metrics(scores, relevant, missing)
    theirs = _independent(scores, relevant, missing)
    for metric in ("AP", "nDCG", "MRR"):
        assert ours[metric] == pytest.approx(theirs[metric], abs=1e-9), metric


def test_report_shows_values_chance_history_and_sources():
    import pandas as pd

    from biocap_assets.evaluation.report import PUBLISHED, headline, render

    rows = pd.DataFrame(
        [
            {
                "task": "zero_shot",
                "dataset": "birds",
                "metric": "top1",
                "value": 50.0,
                "chance": 2.0,
                "n": 100,
            },
            {
                "task": "zero_shot",
                "dataset": "birds",
                "metric": "top5",
                "value": 80.0,
                "chance": 10.0,
                "n": 100,
            },
            {
                "task": "inquire_rerank",
                "dataset": "inquire",
                "metric": "AP",
                "value": 30.0,
                "chance": 15.0,
                "n": 12,
            },
        ]
    )
    history = pd.DataFrame(
        [
            {
                "checkpoint": "old.pt",
                "task": "zero_shot",
                "dataset": "birds",
                "metric": "top1",
                "value": 40.0,
            }
        ]
    )
    assert list(headline(rows)["metric"]) == ["top1", "AP"]
    markdown, page = render("new.pt", rows, history)
    top1 = next(line for line in markdown.splitlines() if "| top1 " in line)
    assert [c.strip() for c in top1.strip("|").split("|")][3:5] == ["50.00", "2.00"]
    assert "old.pt" in markdown and "Against earlier checkpoints" in markdown
    assert all(source in markdown and source in page for _, _, source in PUBLISHED)
    assert page.count("<svg") == 2 + 2, "a bar chart per task, one per dataset over time"
    assert "<script" not in page and "http://" not in page.split("<svg")[0]
