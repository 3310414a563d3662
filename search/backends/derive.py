"""What every store backend derives from an episode's tags, written once: which labels a
store keeps (``keep_mask``), the five best labels of each segment, the frame counts, the
programme aggregates recomputed from the episodes' statistics, the embeddings it stores, and
the read models built from what was stored (top labels, segments, programme embeddings).

Backends differ only in where they put these values (SQL rows, Elasticsearch documents); the
values, their rounding and their order are decided here, so both serve the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tvindex.core.records import (
    EpisodeTags,
    LabelStats,
    SegmentTags,
    SegmentView,
    ShotLabel,
    TopLabel,
    shot_id,
)
from tvindex.core.stats import combine
from tvindex.core.store import StoreError
from tvindex.core.vectors import unit_rows

SEGMENT_TOP = 5  # best labels kept per segment and label set (for timelines and evidence)
TOP_LABELS = 10  # top labels per label set of an episode or programme


def keep_mask(stats: LabelStats, min_score: float, top_k: int) -> np.ndarray:
    """Which labels a store keeps for ranking: score >= min_score, or among the top_k."""
    keep = stats.score >= min_score
    if top_k > 0:
        keep[np.argsort(-stats.score, kind="stable")[:top_k]] = True
    return keep


def kept_labels(stats: Mapping[str, LabelStats], first_ids: Mapping[str, int],
                min_score: float, top_k: int
                ) -> Iterator[tuple[int, str, int, float, float]]:
    """The labels a store keeps of some statistics, per label set in the order given:
    ``(global label id, label set, index in the set, score, coverage)``."""
    for name, st in stats.items():
        for i in np.flatnonzero(keep_mask(st, min_score, top_k)):
            yield (first_ids[name] + int(i), name, int(i), float(st.score[i]),
                   float(st.coverage[i]))


def segment_top(seg: SegmentTags, k: int = SEGMENT_TOP) -> dict[str, list[list[Any]]]:
    """A segment's ``k`` best labels per set as ``[[index, score rounded to 4], ...]`` (ties
    in label order): what both backends store beside the segment."""
    top = {}
    for name, st in seg.stats.items():
        order = np.argsort(-st.score, kind="stable")[:k]
        top[name] = [[int(i), round(float(st.score[i]), 4)] for i in order]
    return top


def segment_frames(seg: SegmentTags) -> int:
    """How many frames a segment covers (its label sets all saw the same frames)."""
    return next(iter(seg.stats.values())).n_frames if seg.stats else 0


def episode_frames(stats: Mapping[str, LabelStats]) -> int:
    """An episode's (or programme's) frame count: its largest label set's."""
    return max((st.n_frames for st in stats.values()), default=0)


def programme_stats(parts: Iterable[tuple[str, LabelStats]]) -> dict[str, LabelStats]:
    """A programme's statistics per label set, recomputed exactly from its indexed episodes'
    ``(label set, stats)`` (combined in the order given)."""
    by_set: dict[str, list[LabelStats]] = {}
    for name, st in parts:
        by_set.setdefault(name, []).append(st)
    return {name: combine(items) for name, items in by_set.items()}


def no_embeddings() -> tuple[list[str], np.ndarray]:
    return [], np.zeros((0, 0), np.float32)


def embedding_frames(tags: EpisodeTags) -> int:
    """The weight of an episode's embedding in its programme's: its frame count (the largest
    label set's, as the episode's ``n_frames``), else its segment count; at least 1."""
    return max(int(episode_frames(tags.stats)) or len(tags.segments), 1)


def episode_embeddings(tags: EpisodeTags
                       ) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]] | None:
    """What a backend stores of an episode's embeddings: the episode's [D] float32 mean and
    its segments' ``(index, [D] mean)`` sorted by index (segments without one left out); None
    when the episode has none (``tags.embedding`` None: segment embeddings are then ignored).
    Raises StoreError for an embedding without a model, mixed dimensions or non-finite
    values."""
    if tags.embedding is None:
        return None
    if not tags.embedding_model:
        raise StoreError(f"episode {tags.episode_id}: embeddings without an embedding_model")
    ep = np.ascontiguousarray(tags.embedding, np.float32)
    if ep.ndim != 1 or ep.size == 0:
        raise StoreError(f"episode {tags.episode_id}: embedding must be a non-empty [D] "
                         f"vector, not shape {ep.shape}")
    segs = []
    for s in tags.segments:
        if s.embedding is None:
            continue
        v = np.ascontiguousarray(s.embedding, np.float32)
        if v.shape != ep.shape:
            raise StoreError(f"episode {tags.episode_id}: segment {s.index} embedding has shape "
                             f"{v.shape}, the episode's {ep.shape}")
        segs.append((int(s.index), v))
    segs.sort(key=lambda x: x[0])
    if not np.isfinite(ep).all() or any(not np.isfinite(v).all() for _, v in segs):
        raise StoreError(f"episode {tags.episode_id}: non-finite embedding values")
    return ep, segs


def programme_embeddings(rows: Iterable[tuple[str, int, np.ndarray]]
                         ) -> tuple[list[str], np.ndarray]:
    """Programme embeddings from ``(programme id, frames, episode embedding)`` rows sorted by
    programme id: each programme's frame-weighted mean (float64 sums), then unit rows."""
    ids: list[str] = []
    sums: list[np.ndarray] = []
    for pid, n, vector in rows:
        v = np.asarray(vector).astype(np.float64)
        if sums and v.size != sums[0].size:
            raise StoreError("episode embeddings of one model have different dimensions")
        if not ids or ids[-1] != pid:
            ids.append(pid)
            sums.append(np.zeros(v.size, np.float64))
        sums[-1] += n * v
    if not ids:
        return no_embeddings()
    return ids, unit_rows(np.stack(sums).astype(np.float32), in_place=True)


# --- read models -------------------------------------------------------------------------
def top_labels(rows: Iterable[tuple[float, int, str, str, float]], k: int = TOP_LABELS
               ) -> dict[str, tuple[TopLabel, ...]]:
    """The top labels per label set from the kept labels' ``(score, label id, label set,
    label name, coverage)``: by score, ties by label id, at most ``k`` per set."""
    out: dict[str, list[TopLabel]] = {}
    for score, _lid, name, label, cov in sorted(rows, key=lambda r: (-r[0], r[1])):
        bucket = out.setdefault(name, [])
        if len(bucket) < k:
            bucket.append(TopLabel(label, round(score, 4), round(cov, 4)))
    return {name: tuple(items) for name, items in out.items()}


def segment_view(episode_id: str, index: int, start_s: float, end_s: float, time_s: float,
                 n_frames: int, top: Mapping[str, Sequence[Sequence[Any]]],
                 names: Mapping[str, Sequence[str]]) -> SegmentView:
    """A stored segment as readers see it: its stored ``segment_top`` with label names
    (``names``: label set -> its labels; sets no longer registered are left out)."""
    labels = {name: tuple(ShotLabel(names[name][i], s) for i, s in pairs)
              for name, pairs in top.items() if name in names}
    return SegmentView(shot_id(episode_id, index), index, start_s, end_s, time_s, n_frames,
                       labels)
