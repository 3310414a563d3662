"""Episodes as sequences: each episode's segment embeddings in time order (from the store's
``embeddings("shot")``), its label profile (``vectors("episode", set)``, optional) and its
genres (the catalogue's metadata: an episode inherits its programme's ``;``-separated genre
list), held in memory and batched with padding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tvindex.core.genres import split_genres
from tvindex.core.records import parse_shot_id

_CHUNK = 256  # episodes per embeddings() call


@dataclass
class EpisodeSequences:
    episode_ids: list[str]
    programme_ids: list[str]
    sequences: list[np.ndarray]  # [T_i, D] float32 each
    genres: list[tuple[str, ...]]  # metadata genres per episode (empty: unlabelled)
    profiles: np.ndarray | None = None  # [N, P]
    profile_sets: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.episode_ids)

    @property
    def dim(self) -> int:
        return int(self.sequences[0].shape[1]) if self.sequences else 0

    @property
    def profile_dim(self) -> int:
        return 0 if self.profiles is None else int(self.profiles.shape[1])

    def labelled(self) -> np.ndarray:
        return np.asarray([i for i, g in enumerate(self.genres) if g], np.int64)

    def vocabulary(self, idx: np.ndarray | None = None, min_episodes: int = 1) -> list[str]:
        """Genres (sorted) carried by at least ``min_episodes`` of the episodes ``idx``."""
        counts: dict[str, int] = {}
        for i in (range(len(self)) if idx is None else idx):
            for g in self.genres[int(i)]:
                counts[g] = counts.get(g, 0) + 1
        return sorted(g for g, c in counts.items() if c >= min_episodes)

    def targets(self, vocab: Sequence[str], idx: np.ndarray | None = None) -> np.ndarray:
        col = {g: j for j, g in enumerate(vocab)}
        rows = range(len(self)) if idx is None else idx
        out = np.zeros((len(rows), len(vocab)), np.float32)
        for r, i in enumerate(rows):
            for g in self.genres[int(i)]:
                if g in col:
                    out[r, col[g]] = 1.0
        return out


def from_store(reader: Any, *, profile_sets: Sequence[str] = ()) -> EpisodeSequences:
    """Every indexed episode that has segment embeddings, with its programme's genres."""
    ep_prog: dict[str, str] = {}
    prog_genres: dict[str, tuple[str, ...]] = {}
    for summary in reader.programmes():
        prog_genres[summary.id] = split_genres(summary.genre)
        for ep in reader.programme(summary.id).episodes:
            if ep.status == "indexed":
                ep_prog[ep.id] = summary.id
    wanted = sorted(ep_prog)
    rows: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(wanted), _CHUNK):
        ids, emb = reader.embeddings("shot", episode_ids=wanted[start:start + _CHUNK])
        for sid, vec in zip(ids, emb):
            episode, _ = parse_shot_id(sid)
            rows.setdefault(episode, []).append(vec)
    episodes = [e for e in wanted if e in rows]
    data = EpisodeSequences(
        episode_ids=episodes, programme_ids=[ep_prog[e] for e in episodes],
        sequences=[np.asarray(rows[e], np.float32) for e in episodes],
        genres=[prog_genres[ep_prog[e]] for e in episodes],
        meta={"embedding_model": reader.embedding_model()})
    if profile_sets:
        parts = []
        for name in profile_sets:
            ids, vec = reader.vectors("episode", name)
            pos = {i: n for n, i in enumerate(ids)}
            block = np.zeros((len(episodes), vec.shape[1] if vec.ndim == 2 else 0), np.float32)
            for r, e in enumerate(episodes):
                if e in pos:
                    block[r] = vec[pos[e]]
            parts.append(block)
        data.profiles = np.concatenate(parts, axis=1)
        data.profile_sets = tuple(profile_sets)
    return data


def pick_steps(length: int, max_len: int, rng: np.random.Generator | None) -> np.ndarray:
    """Indices of the steps kept, in order: all when the sequence fits; else ``max_len``
    evenly spaced (``rng`` None) or drawn at random (training)."""
    if length <= max_len:
        return np.arange(length)
    if rng is None:
        return np.linspace(0, length - 1, max_len).round().astype(np.int64)
    return np.sort(rng.choice(length, max_len, replace=False))


def collate(data: EpisodeSequences, idx: Sequence[int], max_len: int,
            rng: np.random.Generator | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Padded ``x`` [B, T, D], ``mask`` [B, T] and the profiles [B, P] (or None)."""
    picks = [data.sequences[int(i)][pick_steps(len(data.sequences[int(i)]), max_len, rng)]
             for i in idx]
    t = max(1, max(len(p) for p in picks))
    x = np.zeros((len(picks), t, data.dim), np.float32)
    mask = np.zeros((len(picks), t), bool)
    for r, p in enumerate(picks):
        x[r, :len(p)] = p
        mask[r, :len(p)] = True
    prof = None if data.profiles is None else data.profiles[np.asarray(idx, np.int64)]
    return x, mask, prof
