"""Temporal queries: ``A then B [within W]`` at shot level, backend-neutral.

Moment A is the query's groups, moment B its ``then`` groups; exclusions (hard and soft) and
filters apply to both. Each side is ranked by the store like any shot query (so both backends
give the same answer), then paired in this module:

* B is a shot of the same episode after A (a higher shot index) that starts at most ``W``
  seconds after A ends (``within W``); without ``within``, B must be the very next shot.
* Each A shot is one hit, paired with its best B (highest score; ties: the earliest).
* The hit's score is the geometric mean of the two shots' scores, sqrt(score_A * score_B);
  ``min_score`` applies to it. Sorts: score, air date, or the duration of the span from A's
  start to B's end.

The hit is moment A (its id, times and evidence); ``hit.then`` is moment B. At episode and
programme level a ``then`` query is a :class:`~search.query.QueryError`: the order of moments
is a property of shots within one episode.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from typing import Any

from search.query import QueryError
from tvindex.core.records import Hit, SearchPage
from tvindex.core.store import CatalogueReader

MAX_SIDE = 5000  # the most shots either moment may match (else: narrow the query)
_SLACK_S = 1e-6


def sides(query: Any) -> tuple[Any, Any]:
    """The query of moment A and of moment B."""
    a = replace(query, then_groups=(), then_terms=(), within_s=None, then_word_groups=())
    b = replace(query, groups=query.then_groups, group_terms=query.then_terms, then_groups=(),
                then_terms=(), within_s=None, word_groups=query.then_word_groups,
                then_word_groups=())
    return a, b


def _side_hits(store: CatalogueReader, query: Any, name: str) -> list[Hit]:
    page = store.search(query, "shot", MAX_SIDE, 0)
    if page.total > MAX_SIDE:
        raise QueryError(f"moment {name} matches {page.total} shots (at most {MAX_SIDE} for a"
                         " 'then' query): add a term or a filter to narrow it",
                         code="query_too_broad")
    return page.hits


def _moment(hit: Hit) -> dict[str, Any]:
    return {"id": hit.id, "start_s": hit.start_s, "end_s": hit.end_s, "time_s": hit.time_s,
            "score": hit.score, "evidence": [dict(e.__dict__) for e in hit.evidence]}


def pairs(a_hits: list[Hit], b_hits: list[Hit], within_s: float | None) -> list[Hit]:
    """One hit per A shot that has a B (see the module's rule), in no particular order."""
    by_episode: dict[str, list[tuple[int, Hit]]] = {}
    for h in b_hits:
        by_episode.setdefault(h.episode_id or "", []).append((_index(h), h))
    out = []
    for a in a_hits:
        idx = _index(a)
        best: tuple[float, float, Hit] | None = None
        for b_idx, b in by_episode.get(a.episode_id or "", ()):
            if within_s is None:
                ok = b_idx == idx + 1
            else:
                ok = b_idx > idx and (b.start_s or 0.0) - (a.end_s or 0.0) <= within_s + _SLACK_S
            if ok and (best is None or (b.score, -b_idx) > (best[0], best[1])):
                best = (b.score, -b_idx, b)
        if best is None:
            continue
        b = best[2]
        hit = replace(a, score=round(math.sqrt(max(a.score, 0.0) * max(b.score, 0.0)), 6),
                      evidence=list(a.evidence), then=_moment(b))
        out.append(hit)
    return out


def _index(hit: Hit) -> int:
    return int(hit.id.rpartition("@")[2])


def _sort_value(hit: Hit, sort: str) -> float | None:
    if sort == "air_date":
        return dt.date.fromisoformat(hit.air_date).toordinal() if hit.air_date else None
    then = hit.then or {}
    if hit.start_s is None or then.get("end_s") is None:
        return None
    return float(then["end_s"]) - float(hit.start_s)


def order(hits: list[Hit], sort: str, descending: bool) -> list[Hit]:
    """By score (ties by episode, then shot index), or by air date/duration with missing
    values last and ties by score."""
    def base(h: Hit) -> tuple:
        return (-h.score, h.episode_id or "", _index(h))

    if sort == "score":
        return sorted(hits, key=base)

    def key(h: Hit) -> tuple:
        v = _sort_value(h, sort)
        return (v is None, 0.0 if v is None else (-v if descending else v), *base(h))

    return sorted(hits, key=key)


def temporal_search(store: CatalogueReader, query: Any, level: str, limit: int, offset: int,
                    *, min_score: float = 0.0, sort: str = "score",
                    descending: bool = True) -> SearchPage:
    if level != "shot":
        raise QueryError(f"'then' queries relate two shots of one episode, so they run at shot"
                         f" level only (level={level}); search level=shot, or drop 'then'",
                         code="query_syntax")
    a_query, b_query = sides(query)
    found = pairs(_side_hits(store, a_query, "A"), _side_hits(store, b_query, "B"),
                  query.within_s)
    found = [h for h in found if h.score >= min_score]
    ranked = order(found, sort, descending)
    as_dict = query.to_dict() if hasattr(query, "to_dict") else {}
    return SearchPage(ranked[offset:offset + limit], len(ranked), offset, limit, "shot",
                      as_dict)
