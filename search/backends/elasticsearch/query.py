"""A backend-neutral ``ResolvedQuery`` as Elasticsearch query clauses.

The documented score (``search/ranking.py``) is a geometric mean, exp(mean(log p)), which no
built-in relevance function computes. Its logarithm is a *sum*, and a ``bool`` query sums the
scores of its ``must`` clauses, so the ranking query scores every hit with

    sum over groups    max over present alternatives  ln(C * max(p, EPS))  (dis_max of function_score)
  + sum over soft      ln(C * max(1 - p, EPS)), or ln(C) when the label is absent

= n * ln(C) + log-sum of the documented score: the same order, computed by the cluster on exact
float32 values (``field_value_factor`` over the ``p.<id>``/``q.<id>`` fields; C = 2e6 keeps every
term > 0, as Elasticsearch requires of a field_value_factor). Required groups are also ``terms`` filters on ``present`` (a hit
must have every group present, the rule of ``search.ranking``), hard exclusions ``must_not``
``terms`` on ``present``; query filters are ``terms``/``range`` filters. The store then re-scores
the fetched hits exactly with :func:`search.ranking.rank`; the float32 score only decides which
hits to fetch (see ``EsStore.search``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from search.backends.elasticsearch.genres import genre_clauses
from search.ranking import EPS

C = 2e6  # ln(C * EPS) = ln 2 > 0 even after EPS is rounded to float32 in the index
LN_C = math.log(C)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, like SQLite's lower() (the reference backend)."""
    return text.translate(_ASCII_LOWER)


def has_filters(query: Any) -> bool:
    """Whether anything restricts the items (episode_ids too: the engine's best shots and
    visual: terms restrict a search to episodes, as SQLite's ``_allowed`` does)."""
    return bool(query.programme_ids or query.genres or getattr(query, "any_genres", ())
                or query.after or query.before or getattr(query, "episode_ids", ()))


def filters(query: Any, level: str) -> list[dict[str, Any]]:
    """Filter clauses. Programme-level dates match when any indexed episode of the programme
    aired in the range (``air_dates`` holds them; one range clause, so one date must satisfy
    both bounds), as in the SQLite backend."""
    out: list[dict[str, Any]] = []
    if query.programme_ids:
        field = "id" if level == "programme" else "programme_id"
        out.append({"terms": {field: list(query.programme_ids)}})
    # genre: catalogue genres; anygenre: or predicted ones (elasticsearch/genres.py)
    out += genre_clauses(query.genres, getattr(query, "any_genres", ()))
    if query.after or query.before:
        bounds = {}
        if query.after:
            bounds["gte"] = query.after.isoformat()
        if query.before:
            bounds["lte"] = query.before.isoformat()
        out.append({"range": {"air_dates" if level == "programme" else "air_date": bounds}})
    episode_ids = getattr(query, "episode_ids", ())
    if episode_ids and level != "programme":
        out.append({"terms": {"episode_id" if level == "shot" else "id": list(episode_ids)}})
    return out


def group_filters(query: Any) -> list[dict[str, Any]]:
    """Every required group (an OR of labels) as a ``terms`` filter on the present labels."""
    return [{"terms": {"present": [str(ref.label_id) for ref in group]}}
            for group in query.groups]


def exclusions(query: Any) -> list[dict[str, Any]]:
    """``must_not`` clauses: items where a hard-excluded label is present."""
    if not query.excluded:
        return []
    return [{"terms": {"present": [str(ref.label_id) for ref in query.excluded]}}]


def _ln(field: str, label_id: int, on: str = "labels") -> dict[str, Any]:
    return {"function_score": {
        "query": {"term": {on: str(label_id)}},
        "functions": [{"field_value_factor": {"field": f"{field}.{label_id}", "factor": C,
                                              "modifier": "ln", "missing": 1.0}}],
        "boost_mode": "replace"}}


def scoring(query: Any) -> list[dict[str, Any]]:
    """``must`` clauses whose summed score is n * ln(C) + the log-sum of the documented score."""
    must: list[dict[str, Any]] = []
    for group in query.groups:
        alternatives = [_ln("p", ref.label_id, "present") for ref in group]
        must.append(alternatives[0] if len(alternatives) == 1
                    else {"dis_max": {"queries": alternatives, "tie_breaker": 0.0}})
    for ref in getattr(query, "soft_excluded", ()):
        absent = {"constant_score": {"filter": {"bool": {"must_not": [
            {"term": {"labels": str(ref.label_id)}}]}}, "boost": LN_C}}
        must.append({"dis_max": {"queries": [_ln("q", ref.label_id), absent],
                                 "tie_breaker": 0.0}})
    return must


def n_terms(query: Any) -> int:
    return len(query.groups) + len(getattr(query, "soft_excluded", ()))


def label_ids(query: Any) -> list[int]:
    ids = [ref.label_id for group in query.groups for ref in group]
    ids += [ref.label_id for ref in (*query.excluded, *getattr(query, "soft_excluded", ()))]
    return sorted(set(ids))


def clamp(p: float) -> float:
    """The value stored in ``p.<id>`` (and, for 1 - p, ``q.<id>``): ln never sees 0."""
    return max(p, EPS)


def fetched_postings(by_key: dict[int, dict[str, Any]], keys: np.ndarray, label_id: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One label's posting list (``search.ranking``: ids, scores, present) over hits already
    fetched (``by_key``: item key -> hit, ``keys``: their sorted keys): the items whose stored
    scores (``s``) carry the label."""
    ids, scores, present = [], [], []
    lid = str(label_id)
    for k in keys.tolist():
        src = by_key[k]["_source"]
        v = (src.get("s") or {}).get(lid)
        if v is not None:
            ids.append(k)
            scores.append(v)
            present.append(lid in (src.get("present") or ()))
    return (np.asarray(ids, np.int64), np.asarray(scores, np.float32),
            np.asarray(present, bool))
