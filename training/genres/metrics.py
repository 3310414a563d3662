"""Multi-label evaluation in seed 004's layout: precision, recall and F1 with micro, macro and
samples averages, for the top-k genres of every episode (k = 1..5) and for thresholded
probabilities (``>= 0.5``: rounding), and the mean average precision over genres.

- micro: counts summed over every (episode, genre) before dividing;
- macro: per genre, then the mean over the genres that have at least one true episode in the
  evaluated set (a genre absent from a test split has no recall to measure);
- samples: per episode, then the mean over episodes;
- a ratio with a zero denominator is 0 (as scikit-learn's ``zero_division=0``);
- top-k predicts the k highest scores of each episode (ties broken by genre order);
- mAP: per genre with a positive, the mean of the precision at the rank of each positive
  (episodes sorted by descending score, ties kept in order), averaged over those genres.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KS = (1, 2, 3, 4, 5)


def _div(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)


def _f1(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    return _div(2 * p * r, p + r)


def top_k_predictions(scores: np.ndarray, k: int) -> np.ndarray:
    """[N, G] booleans: each row's ``k`` highest scores (all genres when k >= G)."""
    n, g = scores.shape
    k = min(k, g)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.zeros((n, g), bool)
    np.put_along_axis(out, order, True, axis=1)
    return out


def prf(truth: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, float]]:
    """Micro, macro and samples precision/recall/F1 of boolean [N, G] predictions."""
    t, p = truth.astype(bool), pred.astype(bool)
    tp = (t & p)
    out: dict[str, dict[str, float]] = {}
    mp, mr = _div(tp.sum(), p.sum()), _div(tp.sum(), t.sum())
    out["micro"] = {"precision": float(mp), "recall": float(mr), "f1": float(_f1(mp, mr))}
    support = t.sum(0) > 0
    gp, gr = _div(tp.sum(0), p.sum(0)), _div(tp.sum(0), t.sum(0))
    gf = _f1(gp, gr)
    if support.any():
        out["macro"] = {"precision": float(gp[support].mean()),
                        "recall": float(gr[support].mean()), "f1": float(gf[support].mean())}
    else:
        out["macro"] = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    sp, sr = _div(tp.sum(1), p.sum(1)), _div(tp.sum(1), t.sum(1))
    sf = _f1(sp, sr)
    out["samples"] = {"precision": float(sp.mean()) if len(sp) else 0.0,
                      "recall": float(sr.mean()) if len(sr) else 0.0,
                      "f1": float(sf.mean()) if len(sf) else 0.0}
    return out


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """AP of one genre: the mean precision at the rank of each positive."""
    t = truth.astype(bool)
    if not t.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = t[order]
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def mean_average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    aps = [average_precision(truth[:, j], scores[:, j]) for j in range(truth.shape[1])
           if truth[:, j].any()]
    return float(np.mean(aps)) if aps else 0.0


def evaluate(truth: np.ndarray, scores: np.ndarray, *, ks: tuple[int, ...] = KS,
             threshold: float = 0.5) -> dict[str, Any]:
    """Every metric of one evaluation: ``{"top1": {micro: {...}, ...}, ..., "threshold":
    {...}, "map": x, "n": N}`` (``scores`` are probabilities [N, G])."""
    out: dict[str, Any] = {f"top{k}": prf(truth, top_k_predictions(scores, k)) for k in ks}
    out["threshold"] = prf(truth, scores >= threshold)
    out["map"] = mean_average_precision(truth, scores)
    out["n"] = int(truth.shape[0])
    return out
