"""Splits by programme: every programme's episodes fall in one part only, so a model is
always tested on programmes it has never seen (episodes of one programme look alike; a split
by episode would measure recognising the programme, not the genre)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split_by_programme(programmes: Sequence[str], *, test: float = 0.2, val: float = 0.0,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Indices of ``programmes`` (one programme id per episode) split into "train", "val"
    and "test": the programmes are shuffled with ``seed`` and dealt to test, then val, until
    each part holds at least its share of the episodes; each part with a positive share gets
    at least one programme, and train keeps at least one."""
    progs = np.asarray(list(programmes), dtype=object)
    unique = sorted(set(progs.tolist()))
    rng = np.random.default_rng(seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    sizes = {p: int((progs == p).sum()) for p in unique}
    n = len(progs)
    parts: dict[str, list[str]] = {"test": [], "val": [], "train": []}
    for part, share in (("test", test), ("val", val)):
        want = share * n
        got = 0
        while order and share > 0 and (got < want or not parts[part]) and len(order) > 1:
            p = order.pop(0)
            parts[part].append(p)
            got += sizes[p]
    parts["train"] = order
    return {name: np.flatnonzero(np.isin(progs, ps)) if ps else np.zeros(0, np.int64)
            for name, ps in parts.items()}


def holdout(programmes: Sequence[str], held: Sequence[str]) -> dict[str, np.ndarray]:
    """Train on every programme but ``held``, test on ``held``."""
    progs = np.asarray(list(programmes), dtype=object)
    test = np.isin(progs, list(held))
    return {"train": np.flatnonzero(~test), "val": np.zeros(0, np.int64),
            "test": np.flatnonzero(test)}
