"""Similar programmes, until a recommendation engine exists: cosine similarity of the
programmes' label-score vectors, concatenated over label sets.

Each label set's block is L2-normalised before concatenation so that every set weighs the
same: a softmax set's scores (summing to 1 over 1000 classes) would otherwise be drowned by a
sigmoid set's. A programme missing a set contributes a zero block. Ties break on the id, so
the answer is deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from search.store import CatalogueStore


def programme_matrix(store: CatalogueStore) -> tuple[list[str], np.ndarray]:
    """Programme ids (sorted) and their unit-length concatenated vectors [P, sum of set sizes]."""
    blocks: list[tuple[dict[str, int], np.ndarray]] = []
    ids: set[str] = set()
    for ls in store.label_sets():
        set_ids, vectors = store.vectors("programme", ls.name)
        if not set_ids:
            continue
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        blocks.append(({pid: i for i, pid in enumerate(set_ids)},
                       vectors / np.where(norms > 0, norms, 1.0)))
        ids.update(set_ids)
    order = sorted(ids)
    if not order:
        return [], np.zeros((0, 0), np.float32)
    matrix = np.zeros((len(order), sum(b.shape[1] for _, b in blocks)), np.float64)
    col = 0
    for index, block in blocks:
        for row, pid in enumerate(order):
            if pid in index:
                matrix[row, col:col + block.shape[1]] = block[index[pid]]
        col += block.shape[1]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return order, matrix / np.where(norms > 0, norms, 1.0)


def similar_programmes(store: CatalogueStore, programme_id: str,
                       limit: int = 5) -> list[dict[str, Any]]:
    """The ``limit`` programmes most similar to ``programme_id`` (itself excluded), best
    first: ``[{"id", "title", "genre", "similarity" (cosine, in [0, 1])}]``. Empty when the
    programme has no indexed episode. Unknown id: ``NotFound``."""
    store.programme(programme_id)  # NotFound for an unknown id
    ids, matrix = programme_matrix(store)
    if programme_id not in ids:
        return []
    row = ids.index(programme_id)
    sims = matrix @ matrix[row]
    ranked = sorted((-float(sims[i]), pid) for i, pid in enumerate(ids) if i != row)
    meta = {p["id"]: p for p in store.programmes()}
    return [{"id": pid, "title": meta[pid]["title"], "genre": meta[pid]["genre"],
             "similarity": round(max(0.0, -neg), 4)}
            for neg, pid in ranked[:limit] if pid in meta]
