"""The query engine's front door: text -> parsed -> resolved against the catalogue -> ranked.

The CLI and the web layer call :func:`run_search`; they never talk to a backend's query code.
Queries with ``visual:`` terms go through ``search.visual_search`` (the CLIP index, then the
backend for the rest).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from search.query import ResolvedQuery, parse_query, resolve_query
from search.ranking import parse_sort
from search.temporal import temporal_search
from search.timecodes import add_timecodes
from search.visual_search import visual_page
from tvindex.core.records import LEVELS, SearchPage
from tvindex.core.store import CatalogueStore, StoreError

MAX_LIMIT = 500


class StoreVocabulary:
    """Adapts a store to the resolver's vocabulary protocol."""

    def __init__(self, store: CatalogueStore) -> None:
        self.store = store

    def label_sets(self) -> dict[str, list[tuple[int, str]]]:
        return self.store.vocabulary_label_sets()

    def programme_titles(self) -> list[tuple[str, str]]:
        return self.store.programme_titles()

    def cache_key(self) -> object:
        """Changes whenever labels or programme titles change (None: the store can't tell)."""
        version = self.store.vocabulary_version()
        return None if version is None else (id(self.store), version)


def resolve(store: CatalogueStore, text: str) -> ResolvedQuery:
    """Parse and resolve query text; raises ``search.query.QueryError`` with a helpful message."""
    return resolve_query(parse_query(text), StoreVocabulary(store))


def check_options(min_score: float = 0.0, sort: str | None = "score") -> tuple[str, bool]:
    """Validate ``min_score`` (0..1) and ``sort`` (see ``search.ranking.parse_sort``);
    returns (sort field, descending). Raises StoreError naming the bad one."""
    if not (isinstance(min_score, (int, float)) and 0.0 <= float(min_score) <= 1.0):
        raise StoreError(f"min_score must be between 0 and 1, got {min_score!r}")
    try:
        return parse_sort(sort)
    except ValueError as exc:
        raise StoreError(str(exc)) from None


def run_search(store: CatalogueStore, text: str, level: str = "shot", limit: int = 20,
               offset: int = 0, *, min_score: float = 0.0, sort: str | None = "score"
               ) -> SearchPage:
    """One page of hits. ``min_score``: drop hits scoring below it (totals count the rest);
    ``sort``: ``score`` (default), ``air_date`` or ``duration``, optionally ``:asc``/``:desc``.
    Episode and programme hits carry their best shot; ``A then B`` queries run in
    ``search.temporal``."""
    if level not in LEVELS:
        raise StoreError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise StoreError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise StoreError(f"offset must be >= 0, got {offset}")
    field, descending = check_options(min_score, sort)
    query = resolve(store, text)
    return search_resolved(store, query, level, limit, offset, min_score=float(min_score),
                           sort=field, descending=descending)


def search_resolved(store: CatalogueStore, query: Any, level: str, limit: int, offset: int,
                    *, min_score: float = 0.0, sort: str = "score", descending: bool = True,
                    with_best_shots: bool = True) -> SearchPage:
    """``run_search`` after resolving (the cursor's snapshots call this too, without best
    shots: they add them to each page they cut, see ``best_shots``)."""
    if getattr(query, "temporal", False):
        return add_timecodes(store, temporal_search(
            store, query, level, limit, offset, min_score=min_score, sort=sort,
            descending=descending))
    opts: dict[str, Any] = {}
    if min_score > 0 or sort != "score":  # stores without these options still answer the rest
        opts = {"min_score": min_score, "sort": sort, "descending": descending}
    if getattr(query, "visual_terms", ()):
        page = visual_page(store, query, level, limit, offset,  # type: ignore[arg-type]
                           min_score=min_score, sort=sort, descending=descending)
    else:
        page = store.search(query, level, limit, offset, **opts)  # type: ignore[arg-type]
    if with_best_shots:
        best_shots(store, query, page)
    return add_timecodes(store, page)


def best_shots(store: CatalogueStore, query: Any, page: SearchPage) -> None:
    """Give each episode/programme hit of ``page`` its best shot for the same query (the
    top shot-level hit inside it), so a player can open there: one shot search per hit."""
    if page.level == "shot" or getattr(query, "temporal", False) or not (
            query.groups or getattr(query, "word_groups", ())  # words: issue 17
            or getattr(query, "visual_terms", ())):
        return
    for hit in page.hits:
        if page.level == "episode" and hit.episode_id:
            sub = replace(query, episode_ids=(hit.episode_id,))
        else:
            sub = replace(query, programme_ids=(hit.programme_id,))
        shots = (visual_page(store, sub, "shot", 1, 0) if getattr(query, "visual_terms", ())
                 else store.search(sub, "shot", 1, 0))  # type: ignore[arg-type]
        if shots.hits:
            s = shots.hits[0]
            hit.best_shot = {"id": s.id, "episode_id": s.episode_id, "start_s": s.start_s,
                             "end_s": s.end_s, "time_s": s.time_s, "score": s.score}
