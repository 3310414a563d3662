"""The catalogue store interface. Backends (SQLite embedded, Elasticsearch) implement it with
the same semantics; the indexer and the web layer only ever talk to this interface.

Ranking semantics shared by every backend (see ``search/ranking.py``): a hit must carry every
required group (a group is an OR of labels; a label is carried when the store kept its score,
see ``keep_mask``); its score is the geometric mean of the matched probabilities and of
(1 - p) for each excluded label: exp(mean(log p_group_best, log(1 - p_excluded))).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from tvindex.core.labels import LabelSet
from tvindex.core.records import (
    EpisodeRecord,
    EpisodeState,
    EpisodeTags,
    Hit,
    LabelInfo,
    LabelStats,
    Level,
    ProgrammeRecord,
    SearchPage,
)


class StoreError(RuntimeError):
    """The store cannot do what was asked (bad id, incompatible data); message says why."""


class NotFound(StoreError):
    pass


class StoreUnavailable(StoreError):
    """The store could not be reached (or kept refusing) after its bounded retries. Transient:
    the same call may succeed later. The indexer marks the episode failed with this reason (or,
    when even that cannot reach the store, leaves it pending) and goes on."""


def keep_mask(stats: LabelStats, min_score: float, top_k: int) -> np.ndarray:
    """Which labels a store keeps for ranking: score >= min_score, or among the top_k."""
    keep = stats.score >= min_score
    if top_k > 0:
        keep[np.argsort(-stats.score, kind="stable")[:top_k]] = True
    return keep


class CatalogueStore(ABC):
    """One catalogue: programmes, episodes, segments (shots/frames), label statistics."""

    backend: ClassVar[str] = ""

    # --- writing -------------------------------------------------------------------------
    @abstractmethod
    def upsert_catalogue(self, programmes: Sequence[ProgrammeRecord],
                         episodes: Sequence[EpisodeRecord]) -> None:
        """Register programmes and episodes (metadata only); new episodes start 'pending'.
        Metadata of existing ones is updated; their tags are kept."""

    @abstractmethod
    def register_label_sets(self, label_sets: Sequence[LabelSet]) -> None:
        """Make label sets known (idempotent). A set whose labels changed is an error."""

    @abstractmethod
    def write_episode(self, tags: EpisodeTags) -> None:
        """Atomically replace everything indexed for the episode with ``tags``, mark it
        indexed, and update its programme's aggregates. All or nothing."""

    @abstractmethod
    def mark_failed(self, episode_id: str, reason: str) -> None:
        """Record a failure with its reason. The episode's previous tags are dropped, so
        search only ever shows episodes whose current media was indexed."""

    @abstractmethod
    def remove_episode(self, episode_id: str) -> None: ...

    @abstractmethod
    def request_reindex(self, episode_id: str) -> None:
        """Make the next indexing run re-index the episode even if its media and
        configuration are unchanged. Its current tags stay searchable until then; the
        episode reports ``reindex_requested: true`` meanwhile. Unknown id: NotFound."""

    # --- reading -------------------------------------------------------------------------
    @abstractmethod
    def episode_states(self) -> list[EpisodeState]: ...

    @abstractmethod
    def label_sets(self) -> list[LabelSet]: ...

    @abstractmethod
    def labels(self, label_set: str | None = None, match: str | None = None,
               counts: bool = True) -> list[LabelInfo]: ...

    @abstractmethod
    def programmes(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def programme(self, programme_id: str) -> dict[str, Any]:
        """Metadata, episodes, and top labels per label set (score, coverage)."""

    @abstractmethod
    def episode(self, episode_id: str) -> dict[str, Any]: ...

    @abstractmethod
    def segments(self, episode_id: str) -> list[dict[str, Any]]:
        """The episode's shots/frames in time order, with their top labels."""

    @abstractmethod
    def thumbnail(self, episode_id: str, index: int) -> bytes: ...

    @abstractmethod
    def vectors(self, level: Level, label_set: str) -> tuple[list[str], np.ndarray]:
        """Ids and score vectors [N, n_labels] of every item of a level (episode/programme)."""

    @abstractmethod
    def embedding_model(self) -> str | None:
        """Identity of the tagger whose embeddings the store serves: the model of the most
        recently written episode that has embeddings (None when no episode has any). Items
        embedded by another model (mid-way through a re-index after a model change) are left
        out of ``embeddings`` until they are re-indexed."""

    @abstractmethod
    def embeddings(self, level: Level, episode_ids: Sequence[str] | None = None
                   ) -> tuple[list[str], np.ndarray]:
        """Ids and L2-normalised float32 embeddings [N, D] of the indexed items of a level
        that have one from ``embedding_model()``, ordered by id (shots by episode id, then
        index; shot ids are "EPISODE@INDEX"). Episodes are the mean of their frames' unit
        embeddings, programmes the frame-weighted mean over their episodes, then normalised.
        ``episode_ids`` restricts shots and episodes to those episodes (programmes: to the
        programmes of those episodes). Nothing stored: ``([], zeros((0, 0)))``.

        In detail, for every backend: ids sorted by code point (SQLite's BINARY collation and
        Elasticsearch's keyword order agree), shots by (episode id, integer index); an
        episode's weight in its programme is ``embedding_frames(tags)``; a row of zeros stays
        zeros (never NaN); no row at all (nothing stored, or nothing matches the filter)
        gives ``([], zeros((0, 0)))``."""

    @abstractmethod
    def search(self, query: Any, level: Level = "shot", limit: int = 20,
               offset: int = 0) -> SearchPage:
        """Run a resolved query (``search.query.ResolvedQuery``)."""

    # Vocabulary protocol for the query resolver.
    def vocabulary_label_sets(self) -> dict[str, list[tuple[int, str]]]:
        out: dict[str, list[tuple[int, str]]] = {}
        for info in self.labels(counts=False):
            out.setdefault(info.label_set, []).append((info.label_id, info.name))
        return out

    def programme_titles(self) -> list[tuple[str, str]]:
        return [(p["id"], p["title"]) for p in self.programmes()]

    def vocabulary_version(self) -> object:
        """A cheap value that changes whenever label sets or programme titles change, so the
        query resolver can reuse its label index; None when the backend cannot tell."""
        return None

    def close(self) -> None:  # noqa: B027 (optional hook)
        pass

    def __enter__(self) -> CatalogueStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def no_embeddings() -> tuple[list[str], np.ndarray]:
    return [], np.zeros((0, 0), np.float32)


def normalise_rows(m: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """L2-normalise the rows of ``m`` (float32 [N, D]) in place; rows of zeros stay zeros.
    By chunks of rows, without an [N, D] temporary (``np.linalg.norm`` makes one, and is
    ~30x slower on a million rows)."""
    for lo in range(0, len(m), chunk):
        c = m[lo:lo + chunk]
        norms = np.sqrt(np.einsum("ij,ij->i", c, c))[:, None]
        np.divide(c, norms, out=c, where=norms > 0)
    return m


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
