"""Recommendations: similar programmes, episodes and shots, and query by example.

Two representations of a programme or an episode, both unit vectors:

- its **embedding**: the mean of its frames' unit-length embeddings (the embedding tagger's
  pooled penultimate features; see ``taggers.embedding``), L2-normalised (from the store);
- its **label profile**: its label-score vectors weighted TF-IDF-style across the catalogue
  and L2-normalised per label set, then concatenated and normalised again, so every label set
  weighs the same and a label present nearly everywhere (``person``) counts less than a
  distinctive one. For label ``j`` of a set over the N items of the level,
  ``df_j`` = items whose mean score for ``j`` reaches ``recommend.idf_min_score`` and
  ``idf_j = ln((1 + N) / (1 + df_j)) + 1`` (scikit-learn's smoothed idf).

**Similarity** of two items = ``(we * cos(embeddings) + wl * cos(profiles)) / (we + wl)``, with
``we`` = ``recommend.embedding_weight`` and ``wl`` = ``recommend.label_weight``. When an item
has no embedding (a catalogue indexed with detectors only), the label term alone is used
(and vice versa). The item itself is never returned; ties break on the id, so answers are
deterministic. Programmes and episodes are compared exactly against every item of their
level (a few thousand; their matrices are cached until the store changes); shots go through
the FAISS shot index (``search/vector_catalogue.py``), millions of them.

**Query by example**: a shot id, or an image embedded by the same tagger that embedded the
catalogue, gives the nearest shots by cosine of embeddings. The recommender builds no tagger:
the composition root (``webui/context.py``, ``tvindex similar``) hands it an
``EmbedderProvider``, called once, on the first picture query (it loads a network).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from search.vector_catalogue import VectorCatalogue, episode_versions
from tvindex.core.records import (
    EpisodeDetail,
    Evidence,
    Hit,
    Level,
    SegmentView,
    parse_shot_id,
)
from tvindex.core.store import CatalogueStore, NotFound, StoreError
from tvindex.core.vectors import unit_rows

if TYPE_CHECKING:
    from tvindex.settings import RecommendSettings


class Embedder(Protocol):
    """What query by example needs of the embedding tagger (``indexer``'s ``Tagger`` is one)."""

    def identity(self) -> str:
        """The model's identity, compared with the catalogue's ``embedding_model``."""
        ...

    def predict_with_embeddings(self, frames: Sequence[np.ndarray]
                                ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """RGB frames -> (logits, raw pooled features [B, D] or None)."""
        ...


# Builds the embedder (None: no embedding tagger is configured); called at most once.
EmbedderProvider = Callable[[], "Embedder | None"]


class RecommendError(StoreError):
    """A recommendation cannot be made (no embeddings, another model); message says why."""


def l2_rows(x: np.ndarray) -> np.ndarray:
    """Unit rows in float64 (zero rows stay zero): the indexer's normalisation of frame
    embeddings, at the precision the profiles are compared in."""
    return unit_rows(x, dtype=np.float64)


def tfidf_weights(scores: np.ndarray, min_score: float) -> np.ndarray:
    """[N, n] mean scores of N items -> idf [n]: ln((1 + N) / (1 + df)) + 1."""
    n_items = scores.shape[0]
    df = (np.asarray(scores) >= min_score).sum(axis=0)
    return np.log((1.0 + n_items) / (1.0 + df)) + 1.0


def tfidf_profiles(blocks: Sequence[tuple[np.ndarray, np.ndarray]], min_score: float
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Unit TF-IDF label profiles of N items from their mean scores, one block per label set.

    ``blocks``: per label set, (scores [N, n], present [N] bool), aligned on the same items.
    Each set's idf comes from its present rows; its rows are weighted and L2-normalised (absent
    rows stay zero); the blocks are concatenated and normalised again. Returns the profiles
    [N, sum of n] and each set's idf, so that another item can be profiled the same way
    (``tfidf_query``)."""
    parts, idfs = [], []
    for scores, present in blocks:
        idf = (tfidf_weights(scores[present], min_score) if present.any()
               else np.ones(scores.shape[1]))
        parts.append(np.where(present[:, None], l2_rows(scores * idf), 0.0))
        idfs.append(idf)
    return l2_rows(np.concatenate(parts, axis=1)), idfs


def tfidf_query(vectors: Sequence[np.ndarray | None], idfs: Sequence[np.ndarray]) -> np.ndarray:
    """One item's per-set mean scores (None for a set it lacks), weighted by ``idfs`` from
    ``tfidf_profiles``: a unit profile comparable with its rows."""
    parts = [l2_rows((v * idf)[None, :])[0] if v is not None else np.zeros(len(idf))
             for v, idf in zip(vectors, idfs)]
    return l2_rows(np.concatenate(parts)[None, :])[0]


def label_profiles(store: CatalogueStore, level: Level, min_score: float = 0.05
                   ) -> tuple[list[str], np.ndarray]:
    """Ids (sorted) and unit TF-IDF label profiles [N, sum of label-set sizes] of every indexed
    episode or programme. A set an item lacks contributes a zero block."""
    per_set = []
    for ls in store.label_sets():
        set_ids, scores = store.vectors(level, ls.name)
        if set_ids:
            per_set.append((set_ids, scores))
    order = sorted({item for set_ids, _ in per_set for item in set_ids})
    if not order:
        return [], np.zeros((0, 0), np.float32)
    position = {item: r for r, item in enumerate(order)}
    blocks = [align(position, set_ids, scores, np.float64) for set_ids, scores in per_set]
    profiles, _ = tfidf_profiles(blocks, min_score)
    return order, profiles.astype(np.float32)


def align(position: dict[str, int], ids: Sequence[str], rows: np.ndarray, dtype=np.float32
          ) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` of ``ids`` placed at their ``position`` in a zero matrix over every item, and
    which items were present."""
    out = np.zeros((len(position), rows.shape[1] if rows.size else 0), dtype)
    present = np.zeros(len(position), bool)
    if ids:
        at = [position[i] for i in ids]
        out[at], present[at] = rows, True
    return out, present


@dataclass
class LevelMatrices:
    """Everything needed to compare the items of one level, aligned on ``ids``."""

    ids: list[str]
    position: dict[str, int]
    embeddings: np.ndarray  # [N, D] unit rows, zeros where an item has none
    has_embedding: np.ndarray  # [N] bool
    profiles: np.ndarray  # [N, L] unit rows, zeros where an item has none
    has_profile: np.ndarray  # [N] bool


class Recommender:
    """Similar items and query by example over one store (and its vector indexes)."""

    def __init__(self, store: CatalogueStore, vectors: VectorCatalogue | None = None, *,
                 embedding_weight: float = 0.7, label_weight: float = 0.3,
                 idf_min_score: float = 0.05, embedder: Embedder | None = None,
                 embedder_provider: EmbedderProvider | None = None) -> None:
        """``embedder``: the embedding tagger, ready; or ``embedder_provider``, which builds it
        on the first picture query. Neither: picture queries are refused (RecommendError)."""
        if embedding_weight < 0 or label_weight < 0 or embedding_weight + label_weight <= 0:
            raise ValueError("weights must be >= 0 and not both 0")
        self.store = store
        self.vectors = vectors
        self.embedding_weight = float(embedding_weight)
        self.label_weight = float(label_weight)
        self.idf_min_score = float(idf_min_score)
        self._embedder = embedder
        self._embedder_provider = None if embedder is not None else embedder_provider
        self._lock = threading.Lock()
        self._embedder_lock = threading.Lock()
        self._cache: dict[Level, tuple[str, LevelMatrices]] = {}

    @classmethod
    def from_settings(cls, store: CatalogueStore, settings: RecommendSettings,
                      vectors: VectorCatalogue | None = None, *,
                      embedder_provider: EmbedderProvider | None = None) -> Recommender:
        """From the ``recommend`` section; ``vectors`` and the embedder come from the caller
        (the composition root knows the paths and the taggers)."""
        return cls(store, vectors, embedding_weight=settings.embedding_weight,
                   label_weight=settings.label_weight, idf_min_score=settings.idf_min_score,
                   embedder_provider=embedder_provider)

    # --- programmes and episodes ---------------------------------------------------------
    def _state_key(self) -> str:
        versions = episode_versions(self.store)
        blob = json.dumps([sorted(versions.items()), self.store.embedding_model()])
        return hashlib.sha256(blob.encode()).hexdigest()

    def matrices(self, level: Level) -> LevelMatrices:
        """The level's embeddings and label profiles, cached until the store changes."""
        if level not in ("episode", "programme"):
            raise ValueError(f"level must be episode or programme, not {level!r}")
        key = self._state_key()
        with self._lock:
            cached = self._cache.get(level)
            if cached is not None and cached[0] == key:
                return cached[1]
        emb_ids, emb = self.store.embeddings(level)
        prof_ids, prof = label_profiles(self.store, level, self.idf_min_score)
        ids = sorted(set(emb_ids) | set(prof_ids))
        position = {item: i for i, item in enumerate(ids)}
        embeddings, has_emb = align(position, emb_ids, emb)
        profiles, has_prof = align(position, prof_ids, prof)
        result = LevelMatrices(ids, position, embeddings, has_emb, profiles, has_prof)
        with self._lock:
            self._cache[level] = (key, result)
        return result

    def similar(self, level: Level, item_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """The ``limit`` items of ``level`` (episode or programme) most similar to
        ``item_id``, itself excluded, best first: ``[{"id", "similarity",
        "embedding_similarity", "label_similarity"}]`` (the parts are None when either side
        lacks that representation). Empty when the item is not indexed."""
        m = self.matrices(level)
        row = m.position.get(item_id)
        if row is None:
            return []
        emb_sim = m.embeddings @ m.embeddings[row] if m.has_embedding[row] else None
        prof_sim = m.profiles @ m.profiles[row] if m.has_profile[row] else None
        out = []
        for i, other in enumerate(m.ids):
            if i == row:
                continue
            e = float(emb_sim[i]) if emb_sim is not None and m.has_embedding[i] else None
            p = float(prof_sim[i]) if prof_sim is not None and m.has_profile[i] else None
            total = self.blend(e, p)
            if total is None:
                continue
            out.append((-total, other, e, p))
        out.sort(key=lambda t: (t[0], t[1]))
        return [{"id": other, "similarity": _round(-neg), "embedding_similarity": _round(e),
                 "label_similarity": _round(p)} for neg, other, e, p in out[:limit]]

    def blend(self, embedding_sim: float | None, label_sim: float | None) -> float | None:
        """The documented blend; a missing part drops out with its weight."""
        parts = [(self.embedding_weight, embedding_sim), (self.label_weight, label_sim)]
        parts = [(w, s) for w, s in parts if s is not None and w > 0]
        if not parts:
            return None
        return sum(w * s for w, s in parts) / sum(w for w, _ in parts)

    def similar_programmes(self, programme_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Similar programmes with their title and genre. Unknown id: ``NotFound``."""
        self.store.programme(programme_id)
        meta = {p.id: p for p in self.store.programmes()}
        return [{**item, "title": meta[item["id"]].title, "genre": meta[item["id"]].genre}
                for item in self.similar("programme", programme_id, limit)
                if item["id"] in meta]

    def similar_episodes(self, episode_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Similar episodes with titles and programmes. Unknown id: ``NotFound``."""
        self.store.episode(episode_id)
        out = []
        for item in self.similar("episode", episode_id, limit):
            ep = self.store.episode(item["id"])
            out.append({**item, "title": ep.title, "air_date": ep.air_date,
                        "programme_id": ep.programme_id,
                        "programme_title": ep.programme_title})
        return out

    # --- shots ---------------------------------------------------------------------------
    def _vectors(self) -> VectorCatalogue:
        if self.vectors is None:
            raise RecommendError("no vector index is configured")
        self.vectors.ensure_current()
        return self.vectors

    def shot_embedding(self, shot: str) -> np.ndarray:
        """The stored unit embedding of a shot. Unknown shot: NotFound; none: RecommendError."""
        episode_id, _ = parse_shot_id(shot)
        self.store.episode(episode_id)  # NotFound
        ids, x = self.store.embeddings("shot", [episode_id])
        try:
            return x[ids.index(shot)]
        except ValueError:
            if shot not in {s.id for s in self.store.segments(episode_id)}:
                raise NotFound(f"unknown shot {shot!r}") from None
            raise RecommendError(f"shot {shot!r} has no embedding (its episode was indexed "
                                 "without an embedding tagger; see taggers.embedding)") from None

    def similar_shots(self, shot: str, limit: int = 10,
                      exclude_episode: bool = False) -> list[Hit]:
        """The shots nearest to ``shot`` by embedding, itself excluded (and, with
        ``exclude_episode``, every shot of its own episode)."""
        query = self.shot_embedding(shot)
        vectors = self._vectors()
        exclude = {shot}
        if exclude_episode:
            episode_id, _ = parse_shot_id(shot)
            exclude |= {s.id for s in self.store.segments(episode_id)}
        pairs = vectors.search("shot", query[None, :], limit, exclude)[0]
        return self.shot_hits(pairs)

    def shots_like(self, vector: np.ndarray, limit: int = 10) -> list[Hit]:
        """The shots nearest to a unit query embedding (query by example)."""
        vectors = self._vectors()
        index = vectors.index("shot")
        # A picture unlike the catalogue needs more cells scanned (see search/vectors.py).
        nprobe = min(index.nlist, 4 * index.nprobe) if index.nprobe else None
        pairs = vectors.search("shot", np.asarray(vector, np.float32)[None, :], limit,
                               nprobe=nprobe)[0]
        return self.shot_hits(pairs)

    def embed_image(self, image: np.ndarray) -> np.ndarray:
        """An RGB image [H, W, 3] uint8 -> the unit embedding the catalogue's shots are
        comparable with. RecommendError when the catalogue has no embeddings or was embedded
        by another model than the configured embedding tagger."""
        model = self.store.embedding_model()
        if model is None:
            raise RecommendError("the catalogue has no embeddings: index it with an embedding "
                                 "tagger (taggers.embedding)")
        embedder = self.embedder()
        if embedder is None:
            raise RecommendError("no embedding tagger is configured (taggers.embedding)")
        if embedder.identity() != model:
            raise RecommendError(f"the catalogue was embedded by {model}, but the configured "
                                 f"embedding tagger is {embedder.identity()}; re-index first")
        _, features = embedder.predict_with_embeddings([image])
        v = np.asarray(features[0], np.float64)
        norm = np.linalg.norm(v)
        if not np.isfinite(norm) or norm == 0:
            raise RecommendError("the image gave an empty embedding")
        return unit_rows(v, dtype=np.float32)

    def embedder(self) -> Embedder | None:
        """The embedding tagger, built once on first use (it loads a network). A provider
        that fails is asked again next time."""
        with self._embedder_lock:
            if self._embedder_provider is not None:
                self._embedder = self._embedder_provider()
                self._embedder_provider = None
            return self._embedder

    def shot_hits(self, pairs: list[tuple[str, float]]) -> list[Hit]:
        """(shot id, similarity) pairs -> search hits with times, titles and top labels."""
        hits = []
        episodes: dict[str, tuple[EpisodeDetail, dict[str, SegmentView]]] = {}
        for sid, score in pairs:
            episode_id, _ = parse_shot_id(sid)
            if episode_id not in episodes:
                try:
                    ep = self.store.episode(episode_id)
                    segs = {s.id: s for s in self.store.segments(episode_id)}
                except NotFound:
                    continue  # removed since the index was synced: never show stale ids
                episodes[episode_id] = (ep, segs)
            ep, segs = episodes[episode_id]
            seg = segs.get(sid)
            if seg is None:
                continue
            evidence = [Evidence(name, item.label, item.score)
                        for name, items in seg.top_labels.items() for item in items[:2]]
            hits.append(Hit(level="shot", id=sid, score=_round(score) or 0.0,
                            programme_id=ep.programme_id,
                            programme_title=ep.programme_title, episode_id=episode_id,
                            episode_title=ep.title, air_date=ep.air_date,
                            start_s=seg.start_s, end_s=seg.end_s, time_s=seg.time_s,
                            evidence=evidence))
        return hits


def apply_floor(hits: list[Hit], min_similarity: float | None
                ) -> tuple[list[Hit], float | None]:
    """Query by example's floor: the hits at least ``min_similarity`` similar (all when
    None), and the best similarity among all of them (None when there were none)."""
    best = hits[0].score if hits else None
    if min_similarity is None:
        return hits, best
    return [h for h in hits if h.score >= min_similarity], best


def _round(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(min(1.0, max(-1.0, x)), 4)
