"""Late fusion: per-frame probabilities -> label statistics per shot, episode and programme.

For every label set and every group of frames:
- score    = mean probability over the frames (for softmax sets, the mean of the softmax);
- coverage = share of the frames whose probability reaches the label set's threshold;
- ranking  = labels ordered by score.
Accumulators stream: they hold running sums, never the frames. Frame embeddings (unit length)
aggregate the same way: the mean per group, combined by frame-weighted means.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tvindex.core.labels import LabelSet
from tvindex.core.records import LabelStats


class StatsAccumulator:
    """Running sums for one label set; ``add`` frames, then ``result()``."""

    def __init__(self, size: int, threshold: float) -> None:
        self.threshold = float(threshold)
        self.sum = np.zeros(size, np.float64)
        self.hits = np.zeros(size, np.int64)
        self.n = 0

    def add(self, probs: np.ndarray) -> None:
        """probs: [n] or [F, n] probabilities of one or F frames."""
        p = np.atleast_2d(np.asarray(probs, np.float64))
        self.sum += p.sum(axis=0)
        self.hits += (p >= self.threshold).sum(axis=0)
        self.n += p.shape[0]

    def result(self) -> LabelStats:
        if self.n == 0:
            raise ValueError("no frames were added")
        return LabelStats((self.sum / self.n).astype(np.float32),
                          (self.hits / self.n).astype(np.float32), self.n)


def aggregate(probs: np.ndarray, threshold: float) -> LabelStats:
    """[F, n] probabilities -> stats over the F frames."""
    acc = StatsAccumulator(np.asarray(probs).shape[-1], threshold)
    acc.add(probs)
    return acc.result()


def combine(parts: Iterable[LabelStats]) -> LabelStats:
    """Stats of a union of disjoint frame groups (episodes -> programme), weighted by frames:
    exactly the stats one would get over all their frames."""
    parts = list(parts)
    n = sum(p.n_frames for p in parts)
    if n == 0:
        raise ValueError("no frames in any part")
    score = sum(p.score.astype(np.float64) * p.n_frames for p in parts) / n
    coverage = sum(p.coverage.astype(np.float64) * p.n_frames for p in parts) / n
    return LabelStats(score.astype(np.float32), coverage.astype(np.float32), n)


class EmbeddingAccumulator:
    """Running sum of unit-length frame embeddings; ``result()`` is their mean [D] float32.

    The mean is not renormalised (its length shows how alike the frames are), so the means
    of disjoint groups combine exactly by frame-weighted averaging (``combine_embeddings``).
    """

    def __init__(self, dim: int) -> None:
        self.sum = np.zeros(int(dim), np.float64)
        self.n = 0

    def add(self, embeddings: np.ndarray) -> None:
        """embeddings: [D] or [F, D] unit-length embeddings of one or F frames."""
        e = np.atleast_2d(np.asarray(embeddings, np.float64))
        if e.shape[1] != self.sum.shape[0]:
            raise ValueError(f"embedding of size {e.shape[1]}, expected {self.sum.shape[0]}")
        self.sum += e.sum(axis=0)
        self.n += e.shape[0]

    def result(self) -> np.ndarray:
        if self.n == 0:
            raise ValueError("no frames were added")
        return (self.sum / self.n).astype(np.float32)


def combine_embeddings(parts: Iterable[tuple[np.ndarray, int]]) -> np.ndarray:
    """Mean embedding of a union of disjoint frame groups, from each group's mean embedding
    and frame count (shots -> episode, episodes -> programme): exactly, up to float32
    rounding, the mean over all their frames. Not renormalised."""
    total, n = None, 0
    for mean, frames in parts:
        if frames <= 0:
            continue
        v = np.asarray(mean, np.float64) * frames
        total = v if total is None else total + v
        n += frames
    if total is None:
        raise ValueError("no frames in any part")
    return (total / n).astype(np.float32)


def ranking(stats: LabelStats, k: int | None = None) -> np.ndarray:
    """Label indices by descending score (stable for ties), the first k."""
    order = np.argsort(-stats.score, kind="stable")
    return order if k is None else order[:k]


def threshold_for(label_set: LabelSet, thresholds: dict[str, float]) -> float:
    """The coverage threshold of a label set: its own entry, else its activation's default."""
    if label_set.name in thresholds:
        return thresholds[label_set.name]
    return thresholds[f"default_{label_set.activation}"]
