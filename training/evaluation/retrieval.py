"""Retrieval agreement of a catalogue with no human labels (issue 8, the report's metrics).

**Retrieval agreement** (:func:`retrieval_agreement`): the evaluated catalogue (indexed with the
student) against a reference catalogue (the same catalogue and sampling indexed with the
teachers, so shot ids ``EPISODE@INDEX`` align). For each sampled label and each level, the
evaluated store ranks shots, episodes and programmes with its own search for that one label
(``coco80:person``; the score is the item's mean probability of the label); the top ``k`` are
scored by nDCG@k (``training.evaluation.metrics.ndcg_at_k``, linear gain) with the reference
store's search scores for the same label as graded relevance. The ideal DCG is that of the
reference's own top ``k``; an item missing from the reference's ranking (its first ``depth``
hits) has relevance 0. A label the reference ranks nothing for at a level has no nDCG there
(counted as ``no_reference_hits``). Identical stores score exactly 1.

Labels: every label of the label sets both stores share that is *present* in the reference
(its mean score reaches ``min_score`` in at least one reference episode); above
``max_labels`` of them, a seeded sample stratified by frequency (the number of reference
episodes where the label is present: rare, medium and common thirds get equal quotas).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.query import LabelRef, ResolvedQuery
from training.evaluation.metrics import ndcg_at_k
from training.evaluation.results import not_available
from tvindex.core.records import LEVELS, Level
from tvindex.core.store import CatalogueStore

GAIN = "linear: gain = the reference store's score of the item (its mean probability of the " \
       "label), in DCG and ideal DCG alike; items outside the reference's ranking: 0"
HISTOGRAM_EDGES = [round(0.1 * i, 1) for i in range(11)]


@dataclass(frozen=True)
class LabelKey:
    label_set: str
    name: str
    frequency: int  # reference episodes where the label is present

    def to_dict(self) -> dict[str, Any]:
        return {"label_set": self.label_set, "label": self.name, "frequency": self.frequency}


def _vocabulary(store: CatalogueStore) -> dict[str, dict[str, int]]:
    """Label set -> label name -> the store's label id."""
    return {name: {label: lid for lid, label in labels}
            for name, labels in store.vocabulary_label_sets().items()}


def present_labels(evaluated: CatalogueStore, reference: CatalogueStore,
                   min_score: float = 0.05) -> list[LabelKey]:
    """Labels of the shared label sets present in the reference (mean score >= min_score in
    at least one reference episode), with their frequency, sorted by set and name."""
    vocab_eval = _vocabulary(evaluated)
    out = []
    for ls in reference.label_sets():
        if ls.name not in vocab_eval:
            continue
        ids, scores = reference.vectors("episode", ls.name)
        if not ids:
            continue
        freq = (np.asarray(scores) >= min_score).sum(axis=0)
        for j, name in enumerate(ls.labels):
            if freq[j] > 0 and name in vocab_eval[ls.name]:
                out.append(LabelKey(ls.name, name, int(freq[j])))
    return sorted(out, key=lambda k: (k.label_set, k.name))


def stratified_sample(labels: Sequence[LabelKey], cap: int, seed: int = 0, strata: int = 3
                      ) -> list[LabelKey]:
    """At most ``cap`` labels: all when they fit; else labels sorted by frequency are cut into
    ``strata`` equal groups and each gets an equal quota (what a small group cannot fill goes
    to the others), drawn with a seeded generator. Sorted by set and name."""
    labels = list(labels)
    if cap <= 0:
        return []
    if len(labels) <= cap:
        return sorted(labels, key=lambda k: (k.label_set, k.name))
    ordered = sorted(labels, key=lambda k: (k.frequency, k.label_set, k.name))
    groups = [list(g) for g in np.array_split(np.arange(len(ordered)), strata) if len(g)]
    quotas = [0] * len(groups)
    left = cap
    while left > 0:  # fair shares, rarest group first for the remainder
        open_groups = [i for i, g in enumerate(groups) if quotas[i] < len(g)]
        share = max(1, left // len(open_groups))
        for i in open_groups:
            take = min(share, len(groups[i]) - quotas[i], left)
            quotas[i] += take
            left -= take
            if left == 0:
                break
    rng = np.random.default_rng(seed)
    chosen = []
    for group, quota in zip(groups, quotas):
        picks = rng.choice(len(group), size=quota, replace=False) if quota else []
        chosen += [ordered[group[int(i)]] for i in picks]
    return sorted(chosen, key=lambda k: (k.label_set, k.name))


def _ranking(store: CatalogueStore, vocab: dict[str, dict[str, int]], label: LabelKey,
             level: Level, limit: int) -> list[tuple[str, float]]:
    """The store's own search for the one label: [(item id, score)] best first."""
    label_id = vocab.get(label.label_set, {}).get(label.name)
    if label_id is None:
        return []
    query = ResolvedQuery(groups=((LabelRef(label_id, label.label_set, label.name),),))
    page = store.search(query, level, limit, 0)
    return [(hit.id, float(hit.score)) for hit in page.hits]


def ranking_ndcg(evaluated: Sequence[str], reference: Sequence[tuple[str, float]], k: int = 10
                 ) -> float | None:
    """nDCG@k of the ``evaluated`` ranking (item ids, best first) with the ``reference``
    ranking's scores as graded relevance (linear gain; missing items: 0; ideal DCG: the
    reference's top k). None when the reference has nothing relevant."""
    relevance = {item: max(0.0, score) for item, score in reference}
    if not any(v > 0 for v in relevance.values()):
        return None
    top = list(dict.fromkeys(evaluated))[:k]
    # Columns: the evaluated top k in order, then k zero-relevance pads (an evaluated ranking
    # shorter than k gains nothing below its end), then the reference's other items.
    others = [item for item in relevance if item not in set(top)]
    rel = [relevance.get(item, 0.0) for item in top] + [0.0] * k + [relevance[i] for i in others]
    scores = [float(len(top) - i) for i in range(len(top))] + [0.0] * (k + len(others))
    return float(ndcg_at_k(np.asarray([rel]), np.asarray([scores]), k)[0])


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n_labels": 0, "mean": None, "median": None, "p10": None, "min": None,
                "max": None, "histogram": {"edges": HISTOGRAM_EDGES, "counts": [0] * 10}}
    a = np.asarray(values, np.float64)
    counts, _ = np.histogram(np.clip(a, 0.0, 1.0), bins=HISTOGRAM_EDGES)
    return {"n_labels": len(values), "mean": float(a.mean()), "median": float(np.median(a)),
            "p10": float(np.percentile(a, 10)), "min": float(a.min()), "max": float(a.max()),
            "histogram": {"edges": HISTOGRAM_EDGES, "counts": [int(c) for c in counts]}}


def retrieval_agreement(evaluated: CatalogueStore, reference: CatalogueStore, *,
                        levels: Sequence[Level] = LEVELS, k: int = 10, max_labels: int = 60,
                        seed: int = 0, min_score: float = 0.05, depth: int = 200,
                        worst: int = 10) -> dict[str, Any]:
    """nDCG@k per label and level of the evaluated store's rankings against the reference's
    scores (see the module docstring). ``depth``: how many reference hits give relevance."""
    if depth < k:
        raise ValueError("depth must be >= k")
    candidates = present_labels(evaluated, reference, min_score)
    chosen = stratified_sample(candidates, max_labels, seed)
    vocab_eval, vocab_ref = _vocabulary(evaluated), _vocabulary(reference)
    result: dict[str, Any] = {
        "available": True, "k": k, "gain": GAIN, "reference_depth": depth,
        "label_sets": sorted({c.label_set for c in candidates}),
        "selection": {
            "rule": (f"labels of the shared label sets whose mean score reaches {min_score} in "
                     f"at least one reference episode; above {max_labels}, a sample stratified "
                     f"by that frequency (seed {seed})"),
            "present": len(candidates), "evaluated": len(chosen), "seed": seed,
            "max_labels": max_labels, "min_score": min_score},
        "levels": {},
    }
    if not chosen:
        return {**not_available("no label of a shared label set is present in the reference"),
                **{k_: v for k_, v in result.items() if k_ != "available"}}
    for level in levels:
        rows = []
        for label in chosen:
            ours = _ranking(evaluated, vocab_eval, label, level, k)
            theirs = _ranking(reference, vocab_ref, label, level, depth)
            value = ranking_ndcg([item for item, _ in ours], theirs, k)
            ref_top = {item for item, _ in theirs[:k]}
            rows.append({**label.to_dict(), "ndcg": value, "evaluated_hits": len(ours),
                         "reference_hits": len(theirs),
                         "overlap": (len(ref_top & {i for i, _ in ours}) / len(ref_top)
                                     if ref_top else None),
                         "evaluated_top": [i for i, _ in ours[:3]],
                         "reference_top": [i for i, _ in theirs[:3]]})
        scored = [r for r in rows if r["ndcg"] is not None]
        summary = _summary([r["ndcg"] for r in scored])
        summary["no_reference_hits"] = len(rows) - len(scored)
        overlaps = [r["overlap"] for r in scored if r["overlap"] is not None]
        summary["mean_overlap"] = float(np.mean(overlaps)) if overlaps else None
        summary["worst"] = sorted(scored, key=lambda r: (r["ndcg"], -r["frequency"],
                                                         r["label_set"], r["label"]))[:worst]
        summary["per_label"] = rows
        result["levels"][level] = summary
    return result
