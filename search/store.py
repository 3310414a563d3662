"""What every store backend shares: the keep rule, the embeddings derived from an episode's
tags, the row normaliser and the backend registry (``open_store``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tvindex.core.records import EpisodeTags, Hit, LabelStats
from tvindex.core.store import CatalogueStore, StoreError


def keep_mask(stats: LabelStats, min_score: float, top_k: int) -> np.ndarray:
    """Which labels a store keeps for ranking: score >= min_score, or among the top_k."""
    keep = stats.score >= min_score
    if top_k > 0:
        keep[np.argsort(-stats.score, kind="stable")[:top_k]] = True
    return keep


def no_embeddings() -> tuple[list[str], np.ndarray]:
    return [], np.zeros((0, 0), np.float32)


def embedding_frames(tags: EpisodeTags) -> int:
    """The weight of an episode's embedding in its programme's: its frame count (the largest
    label set's, as the episode's ``n_frames``), else its segment count; at least 1."""
    n = max((st.n_frames for st in tags.stats.values()), default=0)
    return max(int(n) or len(tags.segments), 1)


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


def hit_sort_key(hit: Hit) -> tuple:
    """Deterministic order: score desc, then id."""
    return (-hit.score, hit.id)


def open_store(settings: Any) -> CatalogueStore:
    """Build the configured backend. Backends are imported lazily: a user of SQLite never
    imports the Elasticsearch client."""
    backend = settings.catalogue.backend
    if backend == "sqlite":
        from search.sqlite_store import SqliteStore

        return SqliteStore.from_settings(settings)
    if backend == "elasticsearch":
        from search.es_store import EsStore

        return EsStore.from_settings(settings)
    raise StoreError(f"catalogue.backend {backend!r} is not available")
