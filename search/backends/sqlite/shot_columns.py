"""Dense per-label score columns over every shot, kept in memory for shot-level search.

Posting lists are the right storage (small, one delete per episode), but ranking a common label
over a million shots from them means fetching and decoding ~10 000 rows per label per query.
This cache turns each queried label into one float32 column over all shots (NaN where a shot
does not carry the label) and a bool column (the label is present in the shot, see
``search.ranking``): 5 MB per label per million shots, so a query becomes a few array reads. It is dropped whenever the store's write version changes, so results are always
those of the posting lists (the tests compare both paths).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from search.ranking import Postings


class ShotColumnCache:
    def __init__(self, load_ids: Callable[[], np.ndarray],
                 load_postings: Callable[[int], Postings], max_bytes: int = 256 << 20) -> None:
        self._load_ids = load_ids
        self._load_postings = load_postings
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._version: object = None
        self.ids = np.empty(0, np.int64)
        self._columns: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def _refresh(self, version: object) -> None:
        if version != self._version:
            self._columns.clear()
            self.ids = self._load_ids()
            self._version = version

    def columns(self, version: object, label_ids: list[int]
                ) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
        """(ids [N] sorted, {label id: (scores [N], present [N])}) for the store's write
        ``version``."""
        with self._lock:
            self._refresh(version)
            out = {}
            for label in label_ids:
                col = self._columns.get(label)
                if col is None:
                    scores = np.full(len(self.ids), np.nan, np.float32)
                    present = np.zeros(len(self.ids), bool)
                    p_ids, p_scores, p_present = self._load_postings(label)
                    if len(p_ids):
                        pos = np.searchsorted(self.ids, p_ids)
                        scores[pos] = p_scores
                        present[pos] = p_present
                    col = (scores, present)
                    self._columns[label] = col
                    self._evict(keep=set(label_ids))
                else:
                    self._columns.move_to_end(label)
                out[label] = col
            return self.ids, out

    def _evict(self, keep: set[int]) -> None:
        per_column = max(1, len(self.ids) * 5)
        while len(self._columns) * per_column > self.max_bytes:
            victim = next((k for k in self._columns if k not in keep), None)
            if victim is None:
                break  # one query's labels may exceed the budget; they are freed next time
            del self._columns[victim]
