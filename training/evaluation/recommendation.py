"""Recommendation quality, leave one episode out (issue 8, the report's metrics).

:func:`leave_one_episode_out`: for each indexed episode ``e`` whose programme has another
indexed episode, every programme's profile is rebuilt from its episodes *without* ``e``
(frame-weighted means, ``EpisodeState.n_frames``, of the unit episode embeddings and of the
episode label-score vectors; TF-IDF label profiles as ``search.recommend.label_profiles``
builds them, with the idf of those programme vectors, also applied to ``e``'s own vectors), and
the programmes are ranked by ``Recommender.blend`` of ``e``'s cosine similarities to them.
Measured: precision@1, MRR and nDCG (binary relevance: the episode's own programme; full
ranking) for the embedding alone, the label profile alone and the configured blend, and
precision@1/MRR over a sweep of the blend's embedding weight. Single-episode programmes are
skipped as queries (counted) but stay candidates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from search.recommend import Recommender, l2_rows, tfidf_profiles, tfidf_query
from training.evaluation.metrics import ndcg_at_k
from training.evaluation.results import not_available
from tvindex.core.store import CatalogueStore

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

