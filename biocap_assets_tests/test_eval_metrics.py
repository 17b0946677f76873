"""Metrics pinned to BioCAP's scripts: hand cases, the scripts' formulas written out, and,
where a checkout of the reference is given (BIOCAP_REFERENCE_REPO), its own metrics.py."""

import importlib.util
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics
import torch

from biocap_assets.evaluation.metrics import (
    hit_rate,
    pair_recalls,
    rerank_metrics,
    retrieval_hits,
    topk_hits,
    zero_shot_ks,
)


def topk_accuracy(scores, labels, k: int) -> float:
    """What the runner reports for zero-shot top-k."""
    return hit_rate(topk_hits(scores, labels, k))


def retrieval_metrics(similarity) -> dict[str, float]:
    """What the runner reports for retrieval."""
    return {name: hit_rate(hits) for name, hits in retrieval_hits(similarity).items()}


def test_topk_accuracy_hand_cases():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.45, 0.4, 0.2]])
    assert topk_accuracy(scores, [0, 2, 1], k=1) == pytest.approx(2 / 3)
    assert topk_accuracy(scores, [1, 0, 2], k=2) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, [1, 0, 2], k=10) == 1.0  # k larger than the classes
    assert math.isnan(topk_accuracy(np.zeros((0, 3)), [], k=1))


def test_zero_shot_cut_offs_are_the_scripts():
    """zero_shot_iid.run: topk keys 1, min(C, 3), min(C, 5)."""
    assert zero_shot_ks(400) == (1, 3, 5)
    assert zero_shot_ks(4) == (1, 3, 4)
    assert zero_shot_ks(2) == (1, 2)


def _script_accuracy(logits: torch.Tensor, target: torch.Tensor, ks) -> dict[int, float]:
    """zero_shot_iid.accuracy, written out: topk, transpose, eq, count per k."""
    pred = logits.topk(max(ks), 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return {k: float(correct[:k].reshape(-1).float().sum()) / len(target) for k in ks}


@pytest.mark.parametrize("seed", range(10))
def test_topk_equals_the_scripts_formula(seed):
    rng = np.random.default_rng(seed)
    n, classes = rng.integers(5, 80), rng.integers(2, 40)
    scores = rng.normal(size=(n, classes)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    ks = zero_shot_ks(int(classes))
    theirs = _script_accuracy(torch.from_numpy(scores), torch.from_numpy(labels), ks)
    for k in ks:
        assert topk_accuracy(scores, labels, k) == pytest.approx(theirs[k], abs=1e-9)


def _script_recall(similarity: torch.Tensor, k: int) -> float:
    """retrieval_openclip.eval_custom_dataset, written out: i in similarity[i].argsort()[-k:]."""
    hits = sum(int(i in similarity[i].argsort()[-k:]) for i in range(len(similarity)))
    return hits / len(similarity)


@pytest.mark.parametrize("seed", range(10))
def test_recall_equals_the_scripts_loop_ties_included(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 60))
    # Few distinct values, so many ties: the tie rule must be the script's too.
    sim = rng.integers(0, 4, size=(n, n)).astype(np.float32)
    ours = retrieval_metrics(sim)
    for k in (1, 5, 10):
        assert ours[f"image_to_text_R@{k}"] == pytest.approx(
            _script_recall(torch.from_numpy(sim), k), abs=1e-9
        )
        assert ours[f"text_to_image_R@{k}"] == pytest.approx(
            _script_recall(torch.from_numpy(sim).T, k), abs=1e-9
        )


def test_recall_hand_cases():
    sim = np.array([[0.9, 0.8, 0.1], [0.2, 0.1, 0.7], [0.3, 0.2, 0.25]])
    recalls = pair_recalls(sim, (1, 2, 3))
    assert recalls[1] == pytest.approx(1 / 3)  # only row 0 ranks its own first
    assert recalls[2] == pytest.approx(2 / 3)
    assert recalls[3] == 1.0


def _inquire_formulas(y_true, y_pred, count_pos):
    """INQUIRE src/metrics.py's compute_retrieval_metrics, written out."""
    k = len(y_true)
    unknown = count_pos - sum(y_true)
    ndcg = sklearn.metrics.ndcg_score(
        [y_true.tolist() + [1] * unknown], [y_pred.tolist() + [-100] * unknown], k=k
    )
    ap = (
        sklearn.metrics.average_precision_score(y_true[:k], y_pred[:k])
        if sum(y_true[:k]) > 0
        else 0
    )
    ap = ap * y_true[:k].sum() / np.amin([count_pos, k])
    order = np.flip(np.argsort(y_pred))
    mrr = next((1 / (i + 1) for i in range(len(y_true)) if y_true[order][i] == 1), 0.0)
    return {"AP": ap, "nDCG": ndcg, "MRR": mrr}


@pytest.mark.parametrize("seed", range(20))
def test_rerank_equals_inquires_formulas(seed):
    rng = random.Random(seed)
    n = 100
    y_pred = np.array([rng.random() for _ in range(n)], dtype=np.float32)
    y_true = np.array([int(rng.random() < 0.2) for _ in range(n)])
    y_true[rng.randrange(n)] = 1
    # the reference's count_pos = sum(y_true), and INQUIRE's full-recall normalisation
    for count_pos in (int(y_true.sum()), int(y_true.sum()) + rng.choice([1, 5, 40])):
        ours = rerank_metrics(y_pred, y_true, count_pos)
        theirs = _inquire_formulas(y_true, y_pred, count_pos)
        for metric in ("AP", "nDCG", "MRR"):
            assert ours[metric] == pytest.approx(theirs[metric], abs=1e-9), (metric, count_pos)


def test_rerank_hand_cases():
    perfect = rerank_metrics([0.9, 0.8, 0.1, 0.0], [1, 1, 0, 0])
    assert perfect == {"AP": 1.0, "nDCG": 1.0, "MRR": 1.0}
    worst = rerank_metrics([0.9, 0.8, 0.1, 0.0], [0, 0, 1, 1])
    assert worst["MRR"] == pytest.approx(1 / 3)
    assert worst["AP"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert rerank_metrics([0.5, 0.4], [0, 0]) == {"AP": 0.0, "nDCG": 0.0, "MRR": 0.0}
    # By default only the relevant candidates count (the reference's count_pos).
    assert rerank_metrics([0.9, 0.1], [1, 0])["AP"] == 1.0
    # Counting two relevant images outside the candidates: AP scaled by 1/3, as INQUIRE.
    assert rerank_metrics([0.9, 0.1], [1, 0], count_pos=3)["AP"] == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="below"):
        rerank_metrics([0.9, 0.1], [1, 1], count_pos=1)


def _reference_metrics_module():
    root = os.environ.get("BIOCAP_REFERENCE_REPO")
    if not root:
        pytest.skip("BIOCAP_REFERENCE_REPO (a checkout of Imageomics/biocap) is not set")
    path = Path(root) / "train_and_eval/evaluation/metrics.py"
    spec = importlib.util.spec_from_file_location("reference_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", range(20))
def test_rerank_equals_the_references_own_metrics_py(seed):
    reference = _reference_metrics_module()
    rng = np.random.default_rng(seed)
    y_pred = rng.normal(size=100).astype(np.float32)
    y_true = (rng.random(100) < 0.25).astype(np.int64)
    _, _, ap, ndcg, mrr = reference.compute_retrieval_metrics(y_true, y_pred, count_pos=sum(y_true))
    ours = rerank_metrics(y_pred, y_true)
    assert ours["AP"] == pytest.approx(ap, abs=1e-9)
    assert ours["nDCG"] == pytest.approx(ndcg, abs=1e-9)
    assert ours["MRR"] == pytest.approx(mrr, abs=1e-9)


def test_bootstrap_intervals_hold_the_mean_narrow_with_more_items_and_repeat():
    import numpy as np

    from biocap_assets.evaluation.metrics import bootstrap_ci

    rng = np.random.default_rng(1)
    small = rng.random(20) < 0.6
    large = rng.random(2000) < 0.6
    low, high = bootstrap_ci(small)
    assert low <= small.mean() <= high
    big_low, big_high = bootstrap_ci(large)
    assert big_low <= large.mean() <= big_high
    assert (big_high - big_low) < (high - low) / 3, "about 1/sqrt(n)"
    assert bootstrap_ci(small) == (low, high), "seeded: a report does not change on rerun"
    assert all(np.isnan(v) for v in bootstrap_ci([1.0]))
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)


def test_zero_shot_uses_the_reference_forks_81_templates():
    """zero_shot_iid.py's ``openai_imagenet_template`` (the fork's imagenet_zeroshot_data.py):
    'a photo of {c}.' then OpenAI's 80, in that order. Pinned here by count, ends and a
    middle one; where a checkout is given, template by template against the fork's list."""
    from biocap_assets.evaluation.runner import REFERENCE_TEMPLATES

    texts = [template("{c}") for template in REFERENCE_TEMPLATES]
    assert len(texts) == 81 and len(set(texts)) == 81
    assert texts[:3] == ["a photo of {c}.", "a bad photo of a {c}.", "a photo of many {c}."]
    assert texts[-2:] == ["a photo of a small {c}.", "a tattoo of the {c}."]
    assert "itap of my {c}." in texts
    root = os.environ.get("BIOCAP_REFERENCE_REPO")
    if not root:
        return
    path = Path(root) / "train_and_eval/open_clip_train/imagenet_zeroshot_data.py"
    spec = importlib.util.spec_from_file_location("reference_zeroshot_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert texts == [template("{c}") for template in module.openai_imagenet_template]
