"""Metrics as pure functions over score matrices (numpy), defined as in the papers.

- zero-shot: top-k accuracy of image-vs-class scores;
- retrieval: Recall@k both ways, a hit when any correct item is within the top k;
- INQUIRE rerank: per query, AP and nDCG (scikit-learn) over its candidates, with
  the relevant images missing from the candidates appended at the bottom of the
  ranking, and MRR (reciprocal rank of the first relevant; 0 without one).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, ndcg_score


def topk_accuracy(scores: np.ndarray, labels: Sequence[int], k: int = 1) -> float:
    """Share of rows whose true label is among the k highest scores (ties: lower index)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape[0] == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([labels[i] in order[i] for i in range(len(labels))]))


def recall_at_k(scores: np.ndarray, positives: Sequence[set[int]], k: int) -> float:
    """Share of queries (rows) with a positive column among their top k."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(
        np.mean([bool(positives[i] & set(order[i].tolist())) for i in range(scores.shape[0])])
    )


def retrieval_metrics(
    similarity: np.ndarray, image_of_text: Sequence[int], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """``similarity[i, j]``: image i vs text j; text j describes image ``image_of_text[j]``."""
    n_images = similarity.shape[0]
    texts_of_image: list[set[int]] = [set() for _ in range(n_images)]
    for j, i in enumerate(image_of_text):
        texts_of_image[i].add(j)
    out = {}
    for k in ks:
        out[f"image_to_text_R@{k}"] = recall_at_k(similarity, texts_of_image, k)
        out[f"text_to_image_R@{k}"] = recall_at_k(similarity.T, [{i} for i in image_of_text], k)
    return out


def rerank_metrics(
    scores: Sequence[float], relevant: Sequence[int], missing_relevant: int = 0
) -> dict[str, float]:
    """AP, nDCG and MRR of one query's candidates ranked by ``scores``.

    ``missing_relevant`` relevant images were not among the candidates: they count as
    ranked below every candidate, so AP and nDCG cannot reach 1 without them.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=np.int64)
    if missing_relevant:
        floor = scores.min() if scores.size else 0.0
        # strictly below every candidate and each other: a ranking, not a tie
        scores = np.concatenate([scores, floor - np.arange(1, missing_relevant + 1)])
        relevant = np.concatenate([relevant, np.ones(missing_relevant, dtype=np.int64)])
    if relevant.sum() == 0:
        return {"AP": 0.0, "nDCG": 0.0, "MRR": 0.0}
    ap = float(average_precision_score(relevant, scores))
    ndcg = float(ndcg_score(relevant[None, :], scores[None, :]))
    order = np.argsort(-scores, kind="stable")
    first = int(np.flatnonzero(relevant[order])[0])
    return {"AP": ap, "nDCG": ndcg, "MRR": 1.0 / (first + 1)}
