"""Backend-neutral ranking over posting lists (numpy), the documented score of every backend.

A posting list is ``(ids, scores, present)``: int64 item ids sorted ascending, their float32
probabilities (the mean over the item's frames, for the labels the store keeps), and whether
the label is *present* in the item, for one label at one level. Present means what the Labels
page counts: some frame of the item reached the label set's threshold
(``aggregation.coverage_threshold``: coverage > 0) and the store keeps the label for the item
(and, for a shot, for its episode). A query is a list of required groups (each an OR of
labels), hard-excluded labels (``-term``) and soft-excluded labels (``~term``).

* An item matches when every group has a present alternative and no hard-excluded label is
  present in it.
* Its score is the geometric mean of each group's best present probability and, for each
  soft-excluded label, 1 - its probability (0 when the item does not carry it):

      score = exp( mean( [log p_g for each group g] + [log(1 - p_x) for each soft x] ) )

  Hard exclusions remove items and do not change the scores of the others. The score lies
  in [0, 1] and is comparable across queries with the same number of terms.
* ``min_score`` drops matches whose score is below it (totals count what is left).
* Order: by score (best first, ties by id), or by a sort key the backend supplies per item
  (air date or duration; missing keys last in either direction; ties by score, then id).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tvindex.core.records import Evidence

Postings = tuple[np.ndarray, np.ndarray, np.ndarray]
# A sort key per item id (float64; NaN where the item has none), e.g. its air date's ordinal.
SortKey = Callable[[np.ndarray], np.ndarray]
EPS = 1e-6
SORTS = ("score", "air_date", "duration")


@dataclass
class Ranked:
    ids: np.ndarray  # [M] int64, in result order
    scores: np.ndarray  # [M] float64 in [0, 1]
    group_scores: list[np.ndarray]  # per group: [M] best present probability of the group
    group_choice: list[np.ndarray]  # per group: [M] index of the alternative that was best
    excluded_scores: list[np.ndarray]  # per hard-excluded label: [M] probability (0: absent)
    soft_scores: list[np.ndarray] = field(default_factory=list)  # per soft label: [M]
    # Every matched item id (after min_score), sorted ascending: ``ids`` may be only the top
    # of the ranking, this is all of it (for facets and totals).
    matched: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


def empty_postings() -> Postings:
    return np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, bool)


def present_only(postings: Postings) -> Postings:
    ids, scores, present = postings
    return ids[present], scores[present], present[present]


def lookup(postings: Postings, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ids`` in a posting list: (found [M], scores [M], 0 where missing, present [M])."""
    p_ids, p_scores, p_present = postings
    if len(p_ids) == 0:
        return (np.zeros(len(ids), bool), np.zeros(len(ids), np.float32),
                np.zeros(len(ids), bool))
    pos = np.searchsorted(p_ids, ids)
    pos_c = np.minimum(pos, len(p_ids) - 1)
    found = p_ids[pos_c] == ids
    return (found, np.where(found, p_scores[pos_c], 0.0).astype(np.float32),
            found & p_present[pos_c])


def _contains(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which ``ids`` occur in ``sorted_ids`` (sorted, unique): a binary search per id, much
    cheaper than ``np.isin``'s sort of both arrays when the lists are long."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[pos] == ids


def _union(group: list[np.ndarray]) -> np.ndarray:
    if len(group) == 1:
        return group[0]  # already sorted and unique
    if not group:
        return np.empty(0, np.int64)
    # A stable sort (timsort) of sorted runs is a merge, O(n); np.unique would re-sort.
    ids = np.sort(np.concatenate(group), kind="stable")
    keep = np.ones(len(ids), bool)
    np.not_equal(ids[1:], ids[:-1], out=keep[1:])
    return ids[keep]


def rank(groups: list[list[Postings]], excluded: list[Postings],
         universe: np.ndarray | None = None, top: int | None = None, *,
         soft: list[Postings] | tuple = (), min_score: float = 0.0,
         sort_key: SortKey | None = None, descending: bool = True) -> tuple[Ranked, int]:
    """Combine posting lists into a ranking (see the module's rule).

    ``universe``: sorted ids allowed by the filters; with no groups, it is the candidate set
    (filter-only queries score 1, times the soft exclusions). ``top``: only the best ``top``
    items are ordered and returned (all items tied with the last one too). Returns
    (ranked, total).
    """
    if groups:
        # Candidates: the smallest group's union of present ids, then narrowed by the others.
        unions = [_union([p[0][p[2]] for p in g]) for g in groups]
        order = np.argsort([len(u) for u in unions])
        cand = unions[order[0]]
        for i in order[1:]:
            cand = cand[_contains(unions[i], cand)]
    else:
        cand = np.empty(0, np.int64) if universe is None else universe
    if universe is not None and groups:
        cand = cand[_contains(universe, cand)]
    for p in excluded:
        cand = cand[~_contains(p[0][p[2]], cand)]

    tables = []
    for g in groups:
        found = [lookup(p, cand) for p in g]
        tables.append([np.where(present, s, 0.0).astype(np.float32) for _, s, present in found])
    return _score(cand, tables, [lookup(p, cand)[1] for p in excluded],
                  [lookup(p, cand)[1] for p in soft], top, min_score, sort_key, descending)


Column = tuple[np.ndarray, np.ndarray]  # ([N] float32 scores, NaN where not carried; [N] present)


def rank_columns(groups: list[list[Column]], excluded: list[Column], ids: np.ndarray,
                 allowed: np.ndarray | None = None, top: int | None = None, *,
                 soft: list[Column] | tuple = (), min_score: float = 0.0,
                 sort_key: SortKey | None = None, descending: bool = True
                 ) -> tuple[Ranked, int]:
    """The same ranking as :func:`rank`, over dense columns instead of posting lists.

    ``ids``: [N] sorted item ids; each column: (scores [N] float32, NaN where the item does not
    carry the label; present [N] bool); ``allowed``: [N] bool mask from the filters. At least
    one group.
    """
    mask = np.ones(len(ids), bool) if allowed is None else allowed.copy()
    for g in groups:
        present = g[0][1].copy()
        for col in g[1:]:
            present |= col[1]
        mask &= present
    for col in excluded:
        mask &= ~col[1]
    rows = np.flatnonzero(mask)
    tables = [[np.where(col[1][rows], np.nan_to_num(col[0][rows], nan=0.0), 0.0)
               .astype(np.float32) for col in g] for g in groups]
    return _score(ids[rows], tables, [np.nan_to_num(c[0][rows], nan=0.0) for c in excluded],
                  [np.nan_to_num(c[0][rows], nan=0.0) for c in soft], top, min_score,
                  sort_key, descending)


def _score(cand: np.ndarray, tables: list[list[np.ndarray]], excluded: list[np.ndarray],
           soft: list[np.ndarray], top: int | None, min_score: float,
           sort_key: SortKey | None, descending: bool) -> tuple[Ranked, int]:
    """Score candidates from each group's alternatives' present probabilities (0 = not
    present) and the soft-excluded labels' probabilities, drop those under ``min_score``,
    then order the best ``top``."""
    log_sum = np.zeros(len(cand), np.float64)
    group_scores, group_choice = [], []
    single = len(tables) == 1 and not soft
    for alternatives in tables:
        if len(alternatives) == 1:  # no alternatives to choose from
            best, choice = alternatives[0], np.zeros(len(cand), np.intp)
        else:
            table = np.stack(alternatives)  # [alternatives, M]
            choice = table.argmax(axis=0)
            best = table[choice, np.arange(len(cand))]
        group_scores.append(best)
        group_choice.append(choice)
        if not single:
            log_sum += np.log(np.maximum(best, EPS))
    for s in soft:
        log_sum += np.log(np.maximum(1.0 - s, EPS))
    n_terms = len(tables) + len(soft)
    if single:
        # One group: the geometric mean is its probability; skip the log/exp pass over what
        # can be a million candidates.
        scores = np.maximum(group_scores[0], EPS).astype(np.float64)
    else:
        scores = np.exp(log_sum / n_terms) if n_terms else np.ones(len(cand))
    subset = np.arange(len(cand))
    if min_score > 0:
        subset = np.flatnonzero(scores >= min_score)
    total = len(subset)
    matched = cand[subset]
    if sort_key is not None:
        key = np.asarray(sort_key(cand[subset]), np.float64)
        missing = np.isnan(key)
        key = np.where(missing, 0.0, -key if descending else key)
        order = subset[np.lexsort((cand[subset], -scores[subset], key, missing))]
        if top is not None:
            order = order[:top]
    else:
        if top is not None and total > top:
            # Keep the best `top` (and everything tied with the last of them) before sorting.
            kth = np.partition(scores[subset], total - top)[total - top]
            subset = subset[scores[subset] >= kth]
        order = subset[np.lexsort((cand[subset], -scores[subset]))]
    ranked = Ranked(cand[order], scores[order], [g[order] for g in group_scores],
                    [c[order] for c in group_choice], [e[order] for e in excluded],
                    [s[order] for s in soft], matched)
    return ranked, total


def evidence(query: Any, ranked: Ranked, j: int) -> list[Evidence]:
    """Why ranked item ``j`` matched: for each query term, the label that counted and its
    probability (each required group's best present label; each hard- and soft-excluded
    label, 0 when the item does not carry it). ``query``: a ``ResolvedQuery``."""
    out = []
    terms = getattr(query, "group_terms", ())
    for g, group in enumerate(query.groups):
        ref = group[int(ranked.group_choice[g][j])]
        out.append(Evidence(ref.label_set, ref.name, round(float(ranked.group_scores[g][j]), 4),
                            term=terms[g] if g < len(terms) else ""))
    x_terms = getattr(query, "excluded_terms", ())
    for x, ref in enumerate(query.excluded):
        out.append(Evidence(ref.label_set, ref.name, round(float(ranked.excluded_scores[x][j]), 4),
                            excluded=True, term=x_terms[x] if x < len(x_terms) else ""))
    s_terms = getattr(query, "soft_terms", ())
    for x, ref in enumerate(getattr(query, "soft_excluded", ())):
        out.append(Evidence(ref.label_set, ref.name, round(float(ranked.soft_scores[x][j]), 4),
                            excluded=True, soft=True,
                            term=s_terms[x] if x < len(s_terms) else ""))
    return out


def parse_sort(text: str | None) -> tuple[str, bool]:
    """``score``, ``air_date`` or ``duration``, optionally ``:asc``/``:desc`` (default
    descending: best, newest, longest first) -> (field, descending). ValueError otherwise."""
    raw = (text or "score").strip().lower()
    name, _, direction = raw.partition(":")
    if name not in SORTS or direction not in ("", "asc", "desc"):
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, optionally with :asc or "
                         f":desc (like air_date:asc), got {(text or '')[:40]!r}")
    return name, direction != "asc"
