"""``visual:"a man riding a bicycle"``: free-text visual search over CLIP embeddings.

**Answering a visual term.** The text goes through the CLIP text tower of the model that
embedded the catalogue (the openclip tagger; the composition root injects the encoder, built
on the first visual term: it loads torch and the network), and the CLIP shot index
(``search/visual_vectors.py``) returns its ``visual.top_k`` nearest shots by cosine; shots
under ``visual.min_similarity`` are dropped. Several visual terms must all find the shot.

**Combining with the rest of the query.** The other terms and filters (labels, words,
programme, genre, dates) run in the backend as usual, restricted to the episodes (or
programmes) the visual terms found, reading every item they match there; an item is a hit
when both agree. At the shot level the visual value of a term is the shot's cosine ``c``; at
the episode and programme levels, the best ``c`` among its shots the term found. It enters
the ranking of ``search.ranking`` as one more factor of the geometric mean, as a
probability-like ``p = (1 + c) / 2``::

    score = exp( (n * log s + sum over visual terms of log p) / (n + v) )

where ``s`` is the backend's score over its ``n`` scoring terms (groups, word groups, soft
exclusions; ``n = 0`` for filters only) and ``v`` the number of visual terms. ``min_score``
and the order apply to that score (``air_date``/``duration`` keep the backend's order).
Episode and programme hits get their best shot by the same rule (``search.engine``). This
runs the same over both backends: the FAISS side is backend-independent.

**Where the searcher comes from.** ``attach(store, VisualSearch(...))`` (the CLI, the web
server) makes ``search.engine`` answer visual terms for that store; a store without one, or
a catalogue indexed without the openclip tagger, answers a visual term with a QueryError that
says what is missing. Facets and ``A then B`` are not computed for visual terms.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from search.query import QueryError, Term
from search.query.model import VISUAL_FIELD
from search.vector_catalogue import VectorCatalogue
from tvindex.core.records import Evidence, Hit, Level, SearchPage, parse_shot_id
from tvindex.core.store import CatalogueStore

EPS = 1e-6
NEEDS_TAGGER = ("visual: needs the openclip tagger: add openclip to taggers.active, put CLIP "
                "weights in the model directory and index the catalogue "
                "(docs/visual-search.md)")
_ENCODED = 256  # texts whose embedding is kept (paging and best shots ask again)


class TextEncoder(Protocol):
    """CLIP's text tower (``indexer.taggers.openclip.OpenClipTextEncoder``)."""

    def identity(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class VisualSearch:
    """Text -> the nearest shots of the CLIP index. ``encoder``: builds the text encoder
    (called once, on the first visual term); ``top_k``/``min_similarity``: the ``visual``
    settings section's."""

    def __init__(self, catalogue: VectorCatalogue, encoder: Callable[[], TextEncoder], *,
                 top_k: int = 100, min_similarity: float = 0.2) -> None:
        self.catalogue = catalogue
        self._factory = encoder
        self._encoder: TextEncoder | None = None
        self.top_k = top_k
        self.min_similarity = min_similarity
        self._lock = threading.Lock()
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()

    @classmethod
    def from_settings(cls, store: CatalogueStore, settings: Any,
                      encoder: Callable[[], TextEncoder]) -> VisualSearch:
        """The composition root's: the CLIP index beside ``store`` (in the ``vectors``
        folder) and the ``visual`` section's limits; ``encoder`` builds the text encoder
        (``indexer.embedder.build_text_encoder``)."""
        from search.visual_vectors import visual_catalogue

        vectors = VectorCatalogue.from_settings(store, settings)
        return cls(visual_catalogue(store, vectors), encoder,
                   top_k=settings.visual.top_k, min_similarity=settings.visual.min_similarity)

    def encoder(self) -> TextEncoder:
        with self._lock:
            if self._encoder is None:
                try:
                    self._encoder = self._factory()
                except (RuntimeError, OSError) as exc:  # no open_clip, no weights, bad config
                    raise QueryError(f"{NEEDS_TAGGER}; the text encoder cannot be built: "
                                     f"{exc}") from exc
            return self._encoder

    def _vector(self, encoder: TextEncoder, text: str) -> np.ndarray:
        with self._lock:
            found = self._vectors.get(text)
        if found is None:
            found = np.asarray(encoder.encode([text]), np.float32)[0]
            with self._lock:
                self._vectors[text] = found
                while len(self._vectors) > _ENCODED:
                    self._vectors.popitem(last=False)
        return found

    def shots(self, text: str) -> dict[str, float]:
        """Shot id -> cosine, for the ``top_k`` nearest shots at or above the floor."""
        self.catalogue.ensure_current()
        model = self.catalogue.state().get("model")
        if not model or not len(self.catalogue.index("shot")):
            raise QueryError(f"{NEEDS_TAGGER}; no shot of this catalogue has CLIP embeddings")
        encoder = self.encoder()
        if encoder.identity() != model:
            raise QueryError(f"visual: the CLIP index was made by {model}, but "
                             f"taggers.openclip now loads {encoder.identity()}: index the "
                             "catalogue again (tvindex index) or restore the settings")
        pairs = self.catalogue.search("shot", self._vector(encoder, text)[None, :],
                                      self.top_k)[0]
        return {sid: float(c) for sid, c in pairs if c >= self.min_similarity}


_ATTACHED: weakref.WeakKeyDictionary[Any, VisualSearch] = weakref.WeakKeyDictionary()


def attach(store: CatalogueStore, visual: VisualSearch) -> None:
    """Make the engine answer ``visual:`` terms on ``store`` with ``visual``."""
    _ATTACHED[store] = visual


def attached(store: CatalogueStore) -> VisualSearch | None:
    return _ATTACHED.get(store)


def visual_value(cosine: float) -> float:
    """A cosine in [-1, 1] as the ranking's probability-like factor in [0, 1]."""
    return (1.0 + cosine) / 2.0


def _scoring_terms(query: Any) -> int:
    return (len(query.groups) + len(getattr(query, "word_groups", ()))
            + len(getattr(query, "soft_excluded", ())))


def _within(current: tuple[str, ...], found: set[str]) -> tuple[str, ...]:
    """A filter's ids narrowed to ``found`` (an empty filter means every id)."""
    return tuple(sorted(found if not current else found & set(current)))


def _visual_by_item(store: CatalogueStore, per_term: list[dict[str, float]], level: Level
                    ) -> dict[str, list[float]]:
    """Item id -> each visual term's cosine for it (its best shot's above the shot level);
    items every term found."""
    if level == "shot":
        common = set(per_term[0]).intersection(*per_term[1:])
        return {sid: [t[sid] for t in per_term] for sid in common}
    programme_of = ({s.id: s.programme_id for s in store.episode_states()}
                    if level == "programme" else {})
    best: list[dict[str, float]] = []
    for term in per_term:
        items: dict[str, float] = defaultdict(lambda: -2.0)
        for sid, c in term.items():
            ep = parse_shot_id(sid)[0]
            item = programme_of.get(ep) if level == "programme" else ep
            if item is not None:
                items[item] = max(items[item], c)
        best.append(items)
    common = set(best[0]).intersection(*best[1:])
    return {item: [b[item] for b in best] for item in common}


def visual_page(store: CatalogueStore, query: Any, level: Level, limit: int, offset: int, *,
                min_score: float = 0.0, sort: str = "score", descending: bool = True
                ) -> SearchPage:
    """A page of hits for a resolved query with ``visual_terms`` (the rule: module
    docstring), without best shots (``search.engine`` adds them)."""
    visual = attached(store)
    if visual is None:
        raise QueryError(NEEDS_TAGGER)
    terms = tuple(query.visual_terms)
    per_term = [visual.shots(text) for text in terms]
    found = _visual_by_item(store, per_term, level)
    rest = replace(query, visual_terms=())
    empty = SearchPage([], 0, offset, limit, level, query.to_dict())
    episodes = {parse_shot_id(i)[0] for i in found} if level == "shot" else set(found)
    if level == "programme":
        rest = replace(rest, programme_ids=_within(rest.programme_ids, set(found)))
        reach = len(rest.programme_ids)
    else:
        rest = replace(rest, episode_ids=_within(rest.episode_ids, episodes))
        reach = len(rest.episode_ids)
        if level == "shot" and reach:
            wanted = set(rest.episode_ids)
            reach = sum(s.n_segments or 0 for s in store.episode_states() if s.id in wanted)
    if not found or reach == 0:
        return empty
    opts: dict[str, Any] = {} if sort == "score" else {"sort": sort, "descending": descending}
    page = store.search(rest, level, max(reach, 1), 0, **opts)
    n = _scoring_terms(rest)
    hits: list[Hit] = []
    for hit in page.hits:
        cosines = found.get(hit.id)
        if cosines is None:
            continue
        logs = n * math.log(max(hit.score, EPS)) + sum(
            math.log(max(visual_value(c), EPS)) for c in cosines)
        score = math.exp(logs / (n + len(cosines)))
        if score < min_score:
            continue
        hit.score = round(score, 6)
        hit.evidence = list(hit.evidence) + [
            Evidence(VISUAL_FIELD, text, round(c, 4), term=Term(VISUAL_FIELD, text).to_query())
            for text, c in zip(terms, cosines)]
        hits.append(hit)
    if sort == "score":
        hits.sort(key=lambda h: (-h.score, h.id))
    return SearchPage(hits[offset:offset + limit], len(hits), offset, limit, level,
                      query.to_dict())


