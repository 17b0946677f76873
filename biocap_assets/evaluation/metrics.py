"""Metrics as pure functions over score matrices, defined as BioCAP's own scripts define them.

- zero-shot (``train_and_eval/evaluation/zero_shot_iid.py``): top-k accuracy of
  image-vs-class scores, for k in 1, min(classes, 3), min(classes, 5), with ``torch.topk``
  picking the k best classes;
- retrieval (``retrieval_openclip.py``): the i-th image and the i-th caption are a pair;
  Recall@k both ways is the share of rows i whose partner is among the last k of
  ``similarity[i].argsort()`` (torch's, not stable: ties fall as torch's sort leaves them);
- INQUIRE rerank (``eval_rerank_with_clip.py`` and INQUIRE's ``src/metrics.py``, which are
  identical): per query, INQUIRE's ``compute_retrieval_metrics`` over the ranked candidates
  with ``count_pos``, the number of relevant images. The reference counts only the relevant
  images among the candidates (``count_pos = sum(y_true)``); counting every relevant image
  of the query (a named option) gives INQUIRE's full-recall normalisation. AP is scikit-learn's
  average precision times ``hits / min(count_pos, k)``; nDCG is scikit-learn's ``ndcg_score``
  at k with the relevant images that are not candidates appended last at score -100; MRR is
  the reciprocal rank of the first relevant image in ``np.flip(np.argsort(scores))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sklearn.metrics
import torch

ZERO_SHOT_KS = (1, 3, 5)
RECALL_KS = (1, 5, 10)


def zero_shot_ks(n_classes: int) -> tuple[int, ...]:
    """The reference's cut-offs: 1, min(C, 3), min(C, 5), duplicates dropped."""
    return tuple(dict.fromkeys(min(k, n_classes) for k in ZERO_SHOT_KS))


def topk_hits(scores: np.ndarray, labels: Sequence[int], k: int = 1) -> np.ndarray:
    """Per row, whether its true label is among ``torch.topk``'s k best columns."""
    scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    if scores.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    k = min(k, scores.shape[1])
    predicted = scores.topk(k, 1, True, True)[1]
    target = torch.as_tensor(np.asarray(labels, dtype=np.int64)).view(-1, 1)
    return predicted.eq(target).any(dim=1).numpy()


def hit_rate(hits: np.ndarray) -> float:
    """The share of hits, as the reference scripts count it (hits / rows); NaN for none."""
    return int(hits.sum()) / len(hits) if len(hits) else float("nan")


BOOTSTRAP_DRAWS = 1000
CI_LEVEL = 0.95


def bootstrap_ci(
    values: Sequence[float], draws: int = BOOTSTRAP_DRAWS, level: float = CI_LEVEL, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item values (images, pairs or
    queries, each resampled with replacement); NaN for fewer than two items. Not something
    the reference reports: ours, to show how far a number can be trusted."""
    items = np.asarray(values, dtype=np.float64)
    if items.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    # in chunks of draws, so a large suite never holds draws x items indices at once
    chunk = max(1, 4_000_000 // items.size)
    means = np.concatenate(
        [
            items[rng.integers(0, items.size, size=(min(chunk, draws - start), items.size))].mean(
                axis=1
            )
            for start in range(0, draws, chunk)
        ]
    )
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def pair_hits(similarity: np.ndarray, ks: Sequence[int] = RECALL_KS) -> dict[int, np.ndarray]:
    """Per row i, whether column i is among ``argsort()[-k:]`` (see ``pair_recalls``)."""
    rows = torch.as_tensor(np.asarray(similarity, dtype=np.float32))
    hits = {k: np.zeros(rows.shape[0], dtype=bool) for k in ks}
    for i in range(rows.shape[0]):
        order = rows[i].argsort()
        for k in ks:
            hits[k][i] = i in order[-k:]
    return hits


def pair_recalls(similarity: np.ndarray, ks: Sequence[int] = RECALL_KS) -> dict[int, float]:
    """Recall@k for each k: the share of rows i with column i among ``argsort()[-k:]``.

    The very call of ``retrieval_openclip.py``: ``torch.argsort`` of each row, in float32.
    Its sort is not stable, so which of two equal scores ranks higher is torch's choice;
    calling it the same way keeps ours the reference's wherever the scores are the same.
    """
    return {k: hit_rate(h) for k, h in pair_hits(similarity, ks).items()}


def retrieval_hits(similarity: np.ndarray, ks: Sequence[int] = RECALL_KS) -> dict[str, np.ndarray]:
    """Per pair and per metric name, whether it was a hit (the mean is the metric)."""
    image_to_text = pair_hits(similarity, ks)
    text_to_image = pair_hits(np.asarray(similarity).T, ks)
    return {
        **{f"image_to_text_R@{k}": image_to_text[k] for k in ks},
        **{f"text_to_image_R@{k}": text_to_image[k] for k in ks},
    }


def ndcg_at_k(y_true: np.ndarray, y_pred: np.ndarray, count_pos: int, k: int) -> float:
    """INQUIRE's nDCG@k: relevant images not among the candidates count as ranked last."""
    unknown = int(count_pos - np.sum(y_true))
    expanded_true = list(y_true) + [1] * unknown
    expanded_pred = list(y_pred) + [-100] * unknown
    return float(sklearn.metrics.ndcg_score([expanded_true], [expanded_pred], k=k))


def ap_at_k(y_true: np.ndarray, y_pred: np.ndarray, count_pos: int, k: int) -> float:
    """INQUIRE's AP@k: scikit-learn's AP rescaled by hits / min(count_pos, k)."""
    hits = np.sum(y_true[:k])
    if hits == 0:
        return 0.0
    unnormalised = sklearn.metrics.average_precision_score(y_true[:k], y_pred[:k])
    return float(unnormalised * hits / min(count_pos, k))


def mrr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Reciprocal rank of the first relevant item in ``np.flip(np.argsort(y_pred))``."""
    order = np.flip(np.argsort(y_pred))
    ranked = np.asarray(y_true)[order]
    hits = np.flatnonzero(ranked == 1)
    return float(1 / (hits[0] + 1)) if hits.size else 0.0


def rerank_metrics(
    scores: Sequence[float], relevant: Sequence[int], count_pos: int | None = None
) -> dict[str, float]:
    """AP, nDCG and MRR of one query's candidates (fractions, not percent).

    ``count_pos``: the relevant images of the query; default (the reference's choice),
    those among the candidates.
    """
    y_pred = np.asarray(scores, dtype=np.float64)
    y_true = np.asarray(relevant, dtype=np.int64)
    if count_pos is None:
        count_pos = int(y_true.sum())
    if count_pos < y_true.sum():
        raise ValueError(f"count_pos {count_pos} is below the {y_true.sum()} relevant candidates")
    k = len(y_true)
    return {
        "AP": ap_at_k(y_true, y_pred, count_pos, k),
        "nDCG": ndcg_at_k(y_true, y_pred, count_pos, k) if count_pos else 0.0,
        "MRR": mrr(y_true, y_pred),
    }
