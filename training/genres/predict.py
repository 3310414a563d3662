"""Tagging episodes and programmes with a trained genre model: an episode keeps the genres
whose probability reaches the threshold (at least its ``min_genres`` best); a programme's
probabilities are the mean over its predicted episodes, with the same rule."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.genres.data import EpisodeSequences
from training.genres.fit import GenreModel, GenreTrainError
from tvindex.core.genres import GenreScore


def choose(genres: list[str], probs: np.ndarray, threshold: float, min_genres: int
           ) -> list[GenreScore]:
    order = np.argsort(-probs, kind="stable")
    keep = [j for n, j in enumerate(order) if probs[j] >= threshold or n < min_genres]
    return [GenreScore(genres[j], float(probs[j]), True) for j in keep]


def predict(model: GenreModel, data: EpisodeSequences, *, threshold: float = 0.5,
            min_genres: int = 1, everything: bool = False
            ) -> tuple[dict[str, list[GenreScore]], dict[str, list[GenreScore]]]:
    """Predicted genres of the episodes without catalogue genres (``everything``: of every
    episode) and of their programmes."""
    if model.meta.get("dim") != data.dim and len(data):
        raise GenreTrainError(f"the model reads {model.meta.get('dim')}-dimensional embeddings, "
                              f"the catalogue has {data.dim}: re-train it (tvindex genres fit)")
    want, have = model.meta.get("embedding_model"), data.meta.get("embedding_model")
    if want and have and want != have:
        raise GenreTrainError(f"the model was trained on embeddings of {want}, the catalogue "
                              f"holds {have}'s: re-train it (tvindex genres fit)")
    rows = np.asarray([i for i in range(len(data)) if everything or not data.genres[i]],
                      np.int64)
    if not len(rows):
        return {}, {}
    probs = model.probabilities(data, rows)
    episodes = {data.episode_ids[i]: choose(model.genres, p, threshold, min_genres)
                for i, p in zip(rows, probs)}
    by_prog: dict[str, list[np.ndarray]] = {}
    for i, p in zip(rows, probs):
        by_prog.setdefault(data.programme_ids[i], []).append(p)
    programmes = {pid: choose(model.genres, np.mean(ps, axis=0), threshold, min_genres)
                  for pid, ps in sorted(by_prog.items())}
    return episodes, programmes


def summary(episodes: dict[str, list[GenreScore]], programmes: dict[str, list[GenreScore]]
            ) -> dict[str, Any]:
    return {"episodes": {k: [g.to_dict() for g in v] for k, v in episodes.items()},
            "programmes": {k: [g.to_dict() for g in v] for k, v in programmes.items()}}
