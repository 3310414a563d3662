"""Ids and rows buffered in fixed-size float32 blocks while a ``search.vectors.VectorIndex``
is rebuilt from an iterable (no list of per-row arrays, no [N, D] copy)."""

from __future__ import annotations

import numpy as np

CHUNK = 16384  # rows per buffer while rebuilding from an iterable


class Chunks:
    """Ids and rows buffered in fixed-size float32 blocks (no list of per-row arrays)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids: list[str] = []
        self._blocks: list[np.ndarray] = []
        self._fill = CHUNK  # rows used in the last block

    @classmethod
    def of(cls, ids: list[str], arrays: list[np.ndarray]) -> Chunks:
        """Wrap whole arrays as blocks (no copy)."""
        self = cls(arrays[0].shape[1])
        self.ids = ids
        self._blocks = [a for a in arrays if len(a)]
        self._fill = len(self._blocks[-1]) if self._blocks else CHUNK
        return self

    def __len__(self) -> int:
        return len(self.ids)

    def append(self, item_id: str, vector: np.ndarray) -> None:
        if self._fill == CHUNK:
            self._blocks.append(np.empty((CHUNK, self.dim), np.float32))
            self._fill = 0
        self._blocks[-1][self._fill] = vector
        self._fill += 1
        self.ids.append(item_id)

    def blocks(self):
        """(first row, [rows, dim] block) in order; the last block trimmed."""
        start = 0
        for i, b in enumerate(self._blocks):
            if i == len(self._blocks) - 1:
                b = b[:self._fill]
            yield start, b
            start += len(b)

    def pairs(self):
        """(ids, block) in order."""
        for start, b in self.blocks():
            yield self.ids[start:start + len(b)], b

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at sorted positions ``rows`` as one [len(rows), dim] array."""
        out = np.empty((len(rows), self.dim), np.float32)
        filled = 0
        for start, b in self.blocks():
            sel = rows[(rows >= start) & (rows < start + len(b))] - start
            out[filled:filled + len(sel)] = b[sel]
            filled += len(sel)
        return out
