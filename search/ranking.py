"""Backend-neutral ranking over posting lists (numpy), the documented score of every backend.

A posting list is ``(ids, scores)``: int64 item ids sorted ascending and their float32
probabilities, for one label at one level. A query is a list of required groups (each an OR of
labels) and a list of excluded labels. The score of an item is

    score = exp( mean( [log p_g for each group g] + [log(1 - p_x) for each excluded x] ) )

the geometric mean of "this group is present" and "this excluded label is absent" probabilities,
where p_g is the best probability among the group's labels. An item must be carried by every
group; an excluded label it does not carry has p_x = 0. The score lies in [0, 1] and is
comparable across queries with the same number of terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tvindex.core.records import Evidence

Postings = tuple[np.ndarray, np.ndarray]
EPS = 1e-6


@dataclass
class Ranked:
    ids: np.ndarray  # [M] int64, best first
    scores: np.ndarray  # [M] float64 in [0, 1]
    group_scores: list[np.ndarray]  # per group: [M] best probability of the group
    group_choice: list[np.ndarray]  # per group: [M] index of the alternative that was best
    excluded_scores: list[np.ndarray]  # per excluded label: [M] probability (0 when absent)


def lookup(postings: Postings, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of ``ids`` in a posting list: (found mask [M], scores [M], 0 where missing)."""
    p_ids, p_scores = postings
    if len(p_ids) == 0:
        return np.zeros(len(ids), bool), np.zeros(len(ids), np.float32)
    pos = np.searchsorted(p_ids, ids)
    pos_c = np.minimum(pos, len(p_ids) - 1)
    found = p_ids[pos_c] == ids
    return found, np.where(found, p_scores[pos_c], 0.0).astype(np.float32)


def _contains(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which ``ids`` occur in ``sorted_ids`` (sorted, unique): a binary search per id, much
    cheaper than ``np.isin``'s sort of both arrays when the lists are long."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[pos] == ids


def _union(group: list[Postings]) -> np.ndarray:
    if len(group) == 1:
        return group[0][0]  # already sorted and unique
    if not group:
        return np.empty(0, np.int64)
    # A stable sort (timsort) of sorted runs is a merge, O(n); np.unique would re-sort.
    ids = np.sort(np.concatenate([p[0] for p in group]), kind="stable")
    keep = np.ones(len(ids), bool)
    np.not_equal(ids[1:], ids[:-1], out=keep[1:])
    return ids[keep]


def rank(groups: list[list[Postings]], excluded: list[Postings],
         universe: np.ndarray | None = None, top: int | None = None) -> tuple[Ranked, int]:
    """Combine posting lists into a ranking (best first, ties by id).

    ``universe``: sorted ids allowed by the filters; with no groups, it is the candidate set
    (filter-only queries score 1 minus exclusions). ``top``: only the best ``top`` items are
    ordered and returned (all items tied with the last one too). Returns (ranked, total).
    """
    if groups:
        # Candidates: the smallest group's union of ids, then narrowed by the others.
        unions = [_union(g) for g in groups]
        order = np.argsort([len(u) for u in unions])
        cand = unions[order[0]]
        for i in order[1:]:
            cand = cand[_contains(unions[i], cand)]
    else:
        cand = np.empty(0, np.int64) if universe is None else universe
    if universe is not None and groups:
        cand = cand[_contains(universe, cand)]

    tables = [[lookup(p, cand)[1] for p in g] for g in groups]
    return _score(cand, tables, [lookup(p, cand)[1] for p in excluded], top)


def rank_columns(groups: list[list[np.ndarray]], excluded: list[np.ndarray], ids: np.ndarray,
                 allowed: np.ndarray | None = None, top: int | None = None
                 ) -> tuple[Ranked, int]:
    """The same ranking as :func:`rank`, over dense columns instead of posting lists.

    ``ids``: [N] sorted item ids; each column: [N] float32 probabilities, NaN where the item
    does not carry the label; ``allowed``: [N] bool mask from the filters. At least one group.
    """
    mask = np.ones(len(ids), bool) if allowed is None else allowed.copy()
    for g in groups:
        present = ~np.isnan(g[0])
        for col in g[1:]:
            present |= ~np.isnan(col)
        mask &= present
    rows = np.flatnonzero(mask)
    tables = [[np.nan_to_num(col[rows], nan=0.0) for col in g] for g in groups]
    return _score(ids[rows], tables, [np.nan_to_num(c[rows], nan=0.0) for c in excluded], top)


def _score(cand: np.ndarray, tables: list[list[np.ndarray]], excluded: list[np.ndarray],
           top: int | None) -> tuple[Ranked, int]:
    """Score candidates from each group's alternatives' probabilities (0 = absent) and the
    excluded labels' probabilities, then order the best ``top`` (ties by id)."""
    log_sum = np.zeros(len(cand), np.float64)
    group_scores, group_choice = [], []
    single = len(tables) == 1 and not excluded
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
    for s in excluded:
        log_sum += np.log(np.maximum(1.0 - s, EPS))
    n_terms = len(tables) + len(excluded)
    if single:
        # One group: the geometric mean is its probability; skip the log/exp pass over what
        # can be a million candidates.
        scores = np.maximum(group_scores[0], EPS).astype(np.float64)
    else:
        scores = np.exp(log_sum / n_terms) if n_terms else np.ones(len(cand))
    total = len(cand)
    subset = np.arange(total)
    if top is not None and total > top:
        # Keep the best `top` (and everything tied with the last of them) before sorting.
        kth = np.partition(scores, total - top)[total - top]
        subset = np.flatnonzero(scores >= kth)
    order = subset[np.lexsort((cand[subset], -scores[subset]))]
    ranked = Ranked(cand[order], scores[order], [g[order] for g in group_scores],
                    [c[order] for c in group_choice], [e[order] for e in excluded])
    return ranked, total


def evidence(query: Any, ranked: Ranked, j: int) -> list[Evidence]:
    """What ranked item ``j``: the best label of each required group and each excluded
    label, with the probabilities the score used (``query``: a ``ResolvedQuery``)."""
    out = []
    for g, group in enumerate(query.groups):
        ref = group[int(ranked.group_choice[g][j])]
        out.append(Evidence(ref.label_set, ref.name, round(float(ranked.group_scores[g][j]), 4)))
    for x, ref in enumerate(query.excluded):
        out.append(Evidence(ref.label_set, ref.name, round(float(ranked.excluded_scores[x][j]), 4),
                            excluded=True))
    return out
