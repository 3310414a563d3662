"""Retrieval quality of a catalogue with no human labels (issue 8, the report's metrics).

Pure functions over stores (and over the benchmarks' JSON files); ``training/report.py`` turns
their results into the HTML report. Every result is plain JSON-able data.

**Retrieval agreement** (:func:`retrieval_agreement`): the evaluated catalogue (indexed with the
student) against a reference catalogue (the same catalogue and sampling indexed with the
teachers, so shot ids ``EPISODE@INDEX`` align). For each sampled label and each level, the
evaluated store ranks shots, episodes and programmes with its own search for that one label
(``coco80:person``; the score is the item's mean probability of the label); the top ``k`` are
scored by nDCG@k (``training.distill.metrics.ndcg_at_k``, linear gain) with the reference
store's search scores for the same label as graded relevance. The ideal DCG is that of the
reference's own top ``k``; an item missing from the reference's ranking (its first ``depth``
hits) has relevance 0. A label the reference ranks nothing for at a level has no nDCG there
(counted as ``no_reference_hits``). Identical stores score exactly 1.

Labels: every label of the label sets both stores share that is *present* in the reference
(its mean score reaches ``min_score`` in at least one reference episode); above
``max_labels`` of them, a seeded sample stratified by frequency (the number of reference
episodes where the label is present: rare, medium and common thirds get equal quotas).

**Recommendation quality, leave-one-episode-out** (:func:`leave_one_episode_out`): for each
indexed episode ``e`` whose programme has another indexed episode, every programme's profile
is rebuilt from its episodes *without* ``e`` (frame-weighted means, ``EpisodeState.n_frames``,
of the unit episode embeddings and of the episode label-score vectors; TF-IDF label profiles as
``search.recommend.label_profiles`` builds them, with the idf of those programme vectors, also
applied to ``e``'s own vectors), and the programmes are ranked by ``Recommender.blend`` of
``e``'s cosine similarities to them. Measured: precision@1, MRR and nDCG (binary relevance: the
episode's own programme; full ranking) for the embedding alone, the label profile alone and the
configured blend, and precision@1/MRR over a sweep of the blend's embedding weight.
Single-episode programmes are skipped as queries (counted) but stay candidates.

**Tagging agreement** (:func:`tagging_agreement`) and **latency** (:func:`latency`) are read
from the benchmarks' JSON outputs (``bench/distill_report.py``, ``bench/query_latency.py``,
``bench/api_load.py``, ``bench/vector_search.py``); missing files make the section "not
available".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.query import LabelRef, ResolvedQuery
from search.recommend import Recommender, l2_rows, tfidf_profiles, tfidf_query
from training.distill.metrics import ndcg_at_k
from tvindex.core.records import LEVELS, Level
from tvindex.core.store import CatalogueStore

GAIN = "linear: gain = the reference store's score of the item (its mean probability of the " \
       "label), in DCG and ideal DCG alike; items outside the reference's ranking: 0"
HISTOGRAM_EDGES = [round(0.1 * i, 1) for i in range(11)]


def not_available(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


# --------------------------------------------------------------------------------------------
# Retrieval agreement
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Recommendation quality: leave one episode out
# --------------------------------------------------------------------------------------------

REPRESENTATIONS = ("embedding", "labels", "blend")


def _rank_metrics(scores: np.ndarray, target: int) -> tuple[int, float, float | None]:
    """1-based rank of ``target`` (ties: column order, i.e. programme id), its nDCG with
    binary relevance over the full ranking, and its margin: its score minus the best other
    one's (> 0: ranked first; None when either is missing)."""
    order = np.argsort(-scores, kind="stable")
    rank = int(np.flatnonzero(order == target)[0]) + 1
    relevance = np.zeros((1, len(scores)))
    relevance[0, target] = 1.0
    others = np.delete(scores, target)
    best = others.max() if len(others) else -np.inf
    margin = (float(scores[target] - best) if np.isfinite(scores[target]) and np.isfinite(best)
              else None)
    return rank, float(ndcg_at_k(relevance, scores[None, :], len(scores))[0]), margin


def _blend_scores(blender: Recommender, emb_sim: np.ndarray | None, has_emb: np.ndarray,
                  lab_sim: np.ndarray | None, has_lab: np.ndarray) -> np.ndarray | None:
    """``Recommender.blend`` over every programme (vectorised: one call per combination of
    present parts); -inf where the blend has nothing to compare; None when nothing compares."""
    out = np.full(len(has_emb), -np.inf)
    eu = has_emb & (emb_sim is not None)
    el = has_lab & (lab_sim is not None)
    for mask, a, b in ((eu & el, emb_sim, lab_sim), (eu & ~el, emb_sim, None),
                       (~eu & el, None, lab_sim)):
        if mask.any():
            value = blender.blend(None if a is None else a[mask], None if b is None else b[mask])
            if value is not None:
                out[mask] = value
    out[~np.isfinite(out)] = -np.inf
    return out if np.isfinite(out).any() else None


def leave_one_episode_out(store: CatalogueStore, *, embedding_weight: float = 0.7,
                          label_weight: float = 0.3, idf_min_score: float = 0.05,
                          sweep_steps: int = 11, max_episodes: int | None = None,
                          seed: int = 0) -> dict[str, Any]:
    """Precision@1, MRR and nDCG of each episode's own programme when programmes are ranked
    by similarity to it, its own programme's profile rebuilt without it (module docstring).
    ``max_episodes``: a seeded sample of the query episodes (None: all)."""
    blenders = {"embedding": Recommender(store, embedding_weight=1.0, label_weight=0.0),
                "labels": Recommender(store, embedding_weight=0.0, label_weight=1.0),
                "blend": Recommender(store, embedding_weight=embedding_weight,
                                     label_weight=label_weight, idf_min_score=idf_min_score)}
    states = [s for s in store.episode_states() if s.status == "indexed"]
    emb_ids, emb = store.embeddings("episode")
    emb_row = {e: i for i, e in enumerate(emb_ids)}
    sets = []
    for ls in store.label_sets():
        ids, scores = store.vectors("episode", ls.name)
        if ids:
            sets.append((ls.name, {e: i for i, e in enumerate(ids)},
                         np.asarray(scores, np.float64)))
    usable = [s for s in states if s.id in emb_row or any(s.id in r for _, r, _ in sets)]
    base = {"weights": {"embedding_weight": embedding_weight, "label_weight": label_weight,
                        "idf_min_score": idf_min_score},
            "embedding_model": store.embedding_model()}
    if not usable:
        return {**not_available("no indexed episode has an embedding or label scores"), **base}
    episodes = sorted(s.id for s in usable)
    programme_of = {s.id: s.programme_id for s in usable}
    weight = np.asarray([float(max(s.n_frames or 1, 1)) for s in
                         sorted(usable, key=lambda s: s.id)], np.float64)
    programmes = sorted(set(programme_of.values()))
    pcol = {p: i for i, p in enumerate(programmes)}
    n_ep, n_prog = len(episodes), len(programmes)
    member = np.zeros((n_ep, n_prog))
    for i, e in enumerate(episodes):
        member[i, pcol[programme_of[e]]] = 1.0

    # Episode matrices aligned on ``episodes`` (zeros + mask where a representation is absent).
    dim = emb.shape[1] if len(emb_ids) else 0
    u = np.zeros((n_ep, dim))
    has_u = np.zeros(n_ep, bool)
    for i, e in enumerate(episodes):
        if e in emb_row:
            u[i], has_u[i] = emb[emb_row[e]], True
    label_blocks = []
    for name, rows, scores in sets:
        x = np.zeros((n_ep, scores.shape[1]))
        has = np.zeros(n_ep, bool)
        for i, e in enumerate(episodes):
            if e in rows:
                x[i], has[i] = scores[rows[e]], True
        label_blocks.append((name, x, has))

    # Programme sums (frame-weighted), from which one episode is subtracted per query.
    wu = (weight * has_u)[:, None]
    emb_sum = member.T @ (wu * u)
    emb_w = member.T @ (weight * has_u)
    lab_sums = [(member.T @ ((weight * has)[:, None] * x), member.T @ (weight * has))
                for _, x, has in label_blocks]

    counts = member.sum(axis=0)
    queries = [i for i in range(n_ep) if counts[pcol[programme_of[episodes[i]]]] >= 2]
    skipped = [episodes[i] for i in range(n_ep) if i not in set(queries)]
    if max_episodes is not None and len(queries) > max_episodes:
        rng = np.random.default_rng(seed)
        queries = sorted(int(i) for i in rng.choice(queries, max_episodes, replace=False))
    sweep = np.linspace(0.0, 1.0, sweep_steps) if sweep_steps >= 2 else np.asarray([])
    sweep_blenders = [Recommender(store, embedding_weight=float(w), label_weight=float(1 - w))
                      for w in sweep]

    per_episode = []
    ranks: dict[str, list[tuple[int, float, float | None]]] = {r: [] for r in REPRESENTATIONS}
    sweep_ranks: list[list[tuple[int, float, float | None]]] = [[] for _ in sweep]
    for i in queries:
        e = episodes[i]
        own = pcol[programme_of[e]]
        # Embedding profiles without e.
        e_sum, e_w = emb_sum.copy(), emb_w.copy()
        if has_u[i]:
            e_sum[own] -= weight[i] * u[i]
            e_w[own] -= weight[i]
        prog_has_u = e_w > 1e-9
        prog_u = l2_rows(np.where(prog_has_u[:, None], e_sum, 0.0))
        emb_sim = prog_u @ u[i] if has_u[i] else None
        # Label profiles without e: per set, the programmes' means without e, then the same
        # TF-IDF profiles as label_profiles builds (idf over the programmes having the set),
        # and e's own vectors weighted by those idfs.
        means_blocks = []
        for (_, x, has), (s_sum, s_w) in zip(label_blocks, lab_sums):
            s_sum, s_w = s_sum.copy(), s_w.copy()
            if has[i]:
                s_sum[own] -= weight[i] * x[i]
                s_w[own] -= weight[i]
            present = s_w > 1e-9
            means = np.zeros_like(s_sum)
            means[present] = s_sum[present] / s_w[present, None]
            means_blocks.append((means, present))
        prog_has_l = np.zeros(n_prog, bool)
        for _, present in means_blocks:
            prog_has_l |= present
        lab_sim = None
        if means_blocks and any(has[i] for _, _, has in label_blocks):
            prog_l, idfs = tfidf_profiles(means_blocks, idf_min_score)
            ep_l = tfidf_query([x[i] if has[i] else None for _, x, has in label_blocks], idfs)
            lab_sim = prog_l @ ep_l

        sims = (emb_sim, prog_has_u, lab_sim, prog_has_l)
        entry: dict[str, Any] = {"episode": e, "programme": programme_of[e],
                                 "frames": int(weight[i]), "rank": {}, "top": {},
                                 "margin": {}}
        for rep, blender in blenders.items():
            s = _blend_scores(blender, *sims)
            if s is None:
                entry["rank"][rep] = entry["top"][rep] = entry["margin"][rep] = None
                continue
            rank, ndcg, margin = _rank_metrics(s, own)
            ranks[rep].append((rank, ndcg, margin))
            entry["margin"][rep] = margin
            entry["rank"][rep] = rank
            entry["top"][rep] = programmes[int(np.argsort(-s, kind="stable")[0])]
        for j, blender in enumerate(sweep_blenders):
            s = _blend_scores(blender, *sims)
            if s is not None:
                sweep_ranks[j].append(_rank_metrics(s, own))
        per_episode.append(entry)

    def metrics(values: list[tuple[int, float, float | None]]) -> dict[str, Any]:
        if not values:
            return {"available": False, "episodes": 0, "precision@1": None, "mrr": None,
                    "ndcg": None, "mean_rank": None, "margin_mean": None, "margin_min": None}
        margins = [v[2] for v in values if v[2] is not None]
        r = np.asarray([v[0] for v in values], np.float64)
        return {"available": True, "episodes": len(values),
                "precision@1": float((r == 1).mean()), "mrr": float((1.0 / r).mean()),
                "ndcg": float(np.mean([v[1] for v in values])),
                "mean_rank": float(r.mean()),
                "margin_mean": float(np.mean(margins)) if margins else None,
                "margin_min": float(np.min(margins)) if margins else None}

    harmonic = sum(1.0 / j for j in range(1, n_prog + 1))
    return {
        "available": bool(queries),
        **({} if queries else {"reason": "no programme has two indexed episodes"}),
        **base,
        "episodes": n_ep, "programmes": n_prog, "queries": len(queries),
        "skipped_single_episode": len(skipped), "skipped": skipped,
        "chance": {"precision@1": 1.0 / n_prog, "mrr": harmonic / n_prog},
        "representations": {rep: metrics(ranks[rep]) for rep in REPRESENTATIONS},
        "weight_sweep": [
            {"embedding_weight": round(float(w), 6), "label_weight": round(float(1 - w), 6),
             **metrics(rs)} for w, rs in zip(sweep, sweep_ranks)],
        "per_episode": per_episode,
    }


# --------------------------------------------------------------------------------------------
# Figures read from the benchmarks
# --------------------------------------------------------------------------------------------

TAGGING_METRICS = ("top1", "ndcg@5", "ndcg@10")


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        return None, f"{path}: {exc.strerror or exc}"
    if not text.strip():
        return None, f"{path} is empty"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"{path} is not JSON ({exc.msg}, line {exc.lineno})"


def _head_figures(test: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{head: {"all": {...}} or {...}} -> {head: {frames, top1, ndcg@5, ndcg@10}}."""
    out = {}
    for head, values in sorted((test or {}).items()):
        if isinstance(values, dict) and isinstance(values.get("all"), dict):
            values = values["all"]
        if not isinstance(values, dict):
            continue
        figures = {m: values[m] for m in ("frames", *TAGGING_METRICS)
                   if isinstance(values.get(m), int | float)}
        if figures:
            out[head] = figures
    return out


def tagging_agreement(distill_report: Path | None, bench_dir: Path | None = None
                      ) -> dict[str, Any]:
    """Per head, the student's agreement with its teacher on held-out footage: top-1 and
    nDCG@5/@10 of every run of a ``bench/distill_report.py`` JSON, with the thesis's figures
    and the train-prior baseline. Without that file, ``student_vs_teachers.json`` in
    ``bench_dir`` (the same evaluation of the production student) is used when present."""
    reasons = []
    if distill_report is not None:
        data, why = _read_json(distill_report)
        if why is None and isinstance(data, dict) and isinstance(data.get("runs"), list):
            heads = data.get("heads") or {}
            runs = []
            for run in data["runs"]:
                loss = run.get("loss")
                name = loss.get("name") if isinstance(loss, dict) else str(loss or "student")
                runs.append({"name": str(name), "config": run.get("config"),
                             "heads": _head_figures(run.get("test", {}))})
            thesis = {}
            for setting, roles in (data.get("thesis") or {}).items():
                thesis[setting] = {heads.get(role, role): {m: v for m, v in figures.items()
                                                           if m in TAGGING_METRICS}
                                   for role, figures in roles.items()}
            prior = _head_figures(data.get("prior", {}))
            return {"available": True, "source": str(distill_report),
                    "gain": data.get("gain"), "split": data.get("split"), "roles": heads,
                    "runs": runs, "thesis": thesis, "prior": prior or None}
        reasons.append(why or f"{distill_report} has no 'runs'")
    if bench_dir is not None:
        path = Path(bench_dir) / "student_vs_teachers.json"
        data, why = _read_json(path)
        if why is None and isinstance(data, dict) and isinstance(data.get("results"), list):
            runs = []
            for res in data["results"]:
                if not isinstance(res.get("test"), dict):
                    continue
                runs.append({"name": f"{res.get('loss', 'student')} @ "
                                     f"{res.get('image_size', '?')} px",
                             "config": res.get("checkpoint"),
                             "heads": _head_figures(res["test"])})
            if runs:
                return {"available": True, "source": str(path), "gain": "linear",
                        "split": "test", "roles": {}, "runs": runs, "thesis": {},
                        "prior": None, "fallback_reason": "; ".join(reasons) or None}
        reasons.append(why or f"{path} has no test figures")
    return not_available("; ".join(reasons) or "no distillation report given")


LATENCY_BENCHES = ("query_latency", "api_load", "vector_search")
_PERCENTILES = (50, 90, 95, 99)


def _latency_rows(node: Any, path: str) -> Iterable[dict[str, Any]]:
    if isinstance(node, dict):
        row: dict[str, Any] = {}
        for p in _PERCENTILES:
            for key, unit in ((f"p{p}_ms", "ms"), (f"p{p}", "ms" if "ms" in path else "?"),
                              (f"p{p}_ms_per_batch", "ms per batch")):
                v = node.get(key)
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    row[f"p{p}"] = float(v)
                    row["unit"] = unit
                    break
        if row:
            n = node.get("n")
            yield {"measurement": path, "n": n if isinstance(n, int) else None, **row}
        for key, value in node.items():
            yield from _latency_rows(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _latency_rows(value, f"{path}[{i}]")


def latency(bench_dir: Path | None, benches: Sequence[str] = LATENCY_BENCHES) -> dict[str, Any]:
    """Every latency percentile block (p50/p90/p95/p99, in ms) found in the benchmarks' JSON
    files ``<bench>*.json`` in ``bench_dir``, one row per block, with its JSON path."""
    if bench_dir is None or not Path(bench_dir).is_dir():
        return not_available(f"no benchmark folder {bench_dir}")
    files, rows, problems = [], [], []
    for bench in benches:
        for path in sorted(Path(bench_dir).glob(f"{bench}*.json")):
            data, why = _read_json(path)
            if why:
                problems.append(why)
                continue
            files.append(str(path))
            for row in _latency_rows(data, ""):
                rows.append({"benchmark": bench, "file": path.name, **row})
    if not rows:
        return {**not_available("no latency percentiles in "
                                f"{', '.join(b + '*.json' for b in benches)} under {bench_dir}"
                                + (f" ({'; '.join(problems)})" if problems else "")),
                "files": files}
    return {"available": True, "files": files, "problems": problems, "rows": rows}
