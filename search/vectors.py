"""Vector index over L2-normalised float32 embeddings, keyed by string ids (FAISS).

A thin layer over FAISS that gives its C++ indexes a numpy interface keyed by our ids (shot ids
such as ``"EP@3"``, episode or programme ids). Inner product of unit vectors is their cosine.

Two kinds, chosen by size when the index is built (``rebuild``, or an ``add`` that takes an
exact index to ``exact_threshold`` vectors or more):

- ``exact``: ``IndexFlatIP`` inside an ``IndexIDMap2``: brute force, the same top-k as numpy
  (ties broken by id).
- ``ivf-sq8``: an inverted file (``nlist`` k-means cells trained on a sample of the data,
  ``nprobe`` of them scanned per query) over 8-bit scalar-quantised vectors
  (``IndexIVFScalarQuantizer``: 1 280 bytes per 1 280-d vector instead of 5 120).

Why IVF-SQ8. ``bench/vector_search.py --n 200000 --compare`` builds every candidate on the
same synthetic 1 280-d shot embeddings (200k, 512 cells) and queries them with new shots of
indexed episodes ("catalogue") and shots of unindexed episodes of indexed programmes ("new
episode"); recall@10 against exact, batch queries/s on 2 cores (exact: 20 q/s):

  =====================================  ==========  =========  ===========  ==========
  index                                  bytes/vec   catalogue  new episode  batch q/s
  =====================================  ==========  =========  ===========  ==========
  IVF-SQ8, nprobe 8 (chosen)                  1 317      0.986        0.984         690
  IVF-Flat, nprobe 8                          5 141      1.000        0.9995        400
  IVF-PQ 128x4-bit fast-scan, nprobe 8           89      0.435        0.267       6 150
  same + Refine(SQ8), k_factor 10, nprobe 8   1 369      0.992        0.762       2 820
  HNSW32 (efConstruction 40), efSearch 256    5 392      0.965        0.964         790
  =====================================  ==========  =========  ===========  ==========

PQ alone ranks too coarsely at any nprobe; re-ranking its candidates from 8-bit codes costs
the same memory as IVF-SQ8 and still misses the neighbours of new-episode queries (and FAISS's
``IndexRefine`` takes neither our labels nor ``remove_ids``). IVF-Flat is exact within the
scanned cells but holds 4x the memory at half the speed. HNSW holds the float vectors too, has
lower recall at a similar speed, and cannot remove (tombstones and periodic rebuilds). IVF-SQ8
is past recall@10 0.95 at a quarter of the float memory, 30-50x the exact batch throughput,
trains only a coarse k-means, removes through a hash-table direct map (O(removed)) and clones
to ``GpuIndexIVFScalarQuantizer``. Its 8-bit rounding caps recall near 0.985-0.99 on this data.
nlist ~ sqrt(n) (1 024 at 1M) and nprobe = nlist/64, at least 8 (16 at 1M) keep both query
sets above 0.95; queries unlike the whole catalogue (a new programme) need more cells
(``search(..., nprobe=)``: 64 cells give 0.955 at 1M) and still score within 1 % of exact.

Ids: each string id maps to an int64 label that FAISS stores; replacing an id removes its old
vector first, so an id is never present twice. The kind does not change on ``remove``: an
approximate index that shrank (or grew far past the size it was trained at) reports
``needs_rebuild``; rebuilding from the store (``rebuild``) picks the kind again.

Results are deterministic: every row is ordered by score descending, then id ascending, and
the k-th place is decided among *all* vectors tied with it (the search window grows until the
tie is inside it), so equal scores never make the answer depend on insertion order.

GPU: when FAISS is a GPU build and ``faiss.get_num_gpus() > 0`` (and ``use_gpu`` is not
False), searches run on a GPU copy of the index (``index_cpu_to_gpu``), made lazily and dropped
on every change; the CPU index stays the one that is updated and saved. Searches with an
``exclude`` set over-fetch on the GPU (GPU indexes take no id selector) and fall back to the CPU
past the GPU's k limit. GPU scores may differ from the CPU's in the last bits (another
summation order), so exact ties are only guaranteed on the CPU. This path cannot be exercised
on a machine without a GPU (tests/test_vectors.py skips its GPU test there).

Files (``save``/``load``, crash-safe): ``search/vector_files.py``; the row buffer of a rebuild:
``search/vector_chunks.py``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

import numpy as np

from search.vector_chunks import Chunks
from search.vector_files import (
    EXACT,
    IVF_SQ8,
    VectorIndexError,
    VectorIndexFiles,
    faiss_module,
)

NORM_TOLERANCE = 1e-3  # |‖x‖ - 1| allowed: float16 round trips and averaging stay well inside
GPU_MAX_K = 2048  # FAISS GPU indexes answer at most this many neighbours per query


def _first_bad_row(x: np.ndarray) -> tuple[int, str] | None:
    """(row, what is wrong) for the first non-finite or non-unit row of [N, d] float32."""
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        return int(np.flatnonzero(~finite)[0]), "has NaN or infinite values"
    norms = np.linalg.norm(x, axis=1)
    off = np.abs(norms - 1) > NORM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        return row, (f"has L2 norm {norms[row]:.6g}; embeddings must be L2-normalised "
                     "(see tvindex.core.vectors.unit_rows)")
    return None


def default_nlist(n: int) -> int:
    """Inverted-file cells for ``n`` vectors: the power of two nearest sqrt(n), in [16, 65536].

    sqrt(n) balances the coarse search (nlist centroids) against the cell scan (n/nlist
    vectors per cell); more cells would make training and assignment (n x nlist x d) the
    bottleneck on a small CPU (1M vectors: 1 024 cells)."""
    return int(min(65536, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


def default_nprobe(nlist: int) -> int:
    """Cells scanned per query: nlist / 64, at least 8 (see bench/vector_search.py)."""
    return max(8, nlist // 64)


class VectorIndex(VectorIndexFiles):
    """A FAISS index of unit float32 vectors of dimension ``dim`` keyed by string ids.

    Settings (plain values; configuration is wired by the caller):

    - ``exact_threshold``: a (re)build with fewer vectors is exact, at or above it approximate.
    - ``nlist``: inverted-file cells of the approximate kind (None: ``default_nlist(n)`` at
      build time). ``nprobe``: cells scanned per query (None: ``default_nprobe(nlist)``);
      may be changed at any time.
    - ``train_size``: vectors sampled (seeded) to train the cells; at least ``40 * nlist``
      are used when the data has them (FAISS warns below 39 per centroid).
    - ``use_gpu``: None = when FAISS sees a GPU, True = require one, False = never.
    - ``seed``: training sample and k-means seed (deterministic builds on the same data).

    Thread safety: one lock guards every operation, so a server may search from several
    threads while another thread updates.
    """

    def __init__(self, dim: int, *, exact_threshold: int = 50_000, nlist: int | None = None,
                 nprobe: int | None = None, train_size: int = 65_536,
                 use_gpu: bool | None = None, seed: int = 0) -> None:
        if int(dim) != dim or dim < 1:
            raise VectorIndexError(f"dim must be a positive integer, not {dim!r}")
        if exact_threshold < 1:
            raise VectorIndexError(f"exact_threshold must be >= 1, not {exact_threshold!r}")
        if nlist is not None and nlist < 1:
            raise VectorIndexError(f"nlist must be >= 1, not {nlist!r}")
        if nprobe is not None and nprobe < 1:
            raise VectorIndexError(f"nprobe must be >= 1, not {nprobe!r}")
        if train_size < 1:
            raise VectorIndexError(f"train_size must be >= 1, not {train_size!r}")
        self.dim = int(dim)
        self.exact_threshold = int(exact_threshold)
        self.nlist_setting = nlist
        self.nprobe_setting = nprobe
        self.train_size = int(train_size)
        self.seed = int(seed)
        self._lock = threading.RLock()
        self._gpu_wanted = use_gpu
        self._gpus = 0 if use_gpu is False else self.gpu_count()
        if use_gpu and self._gpus == 0:
            raise VectorIndexError("use_gpu=True but FAISS sees no GPU (a CPU build, or no "
                                   "device)")
        self._gpu_resources = None
        self._gpu_index = None
        self._reset(EXACT)

    # -------------------------------------------------------------------------------------
    # State

    def _reset(self, kind: str, index=None, trained_count: int = 0, nlist: int = 0) -> None:
        faiss = faiss_module()
        self.kind = kind
        self._index = index if index is not None else faiss.IndexIDMap2(
            faiss.IndexFlatIP(self.dim))
        self._label_of: dict[str, int] = {}
        self._id_of: dict[int, str] = {}
        self._next_label = 0
        self.trained_count = trained_count
        self.nlist = nlist
        self._gpu_index = None

    @property
    def nprobe(self) -> int:
        """Cells scanned per query (approximate kind; 0 for exact)."""
        if self.kind == EXACT:
            return 0
        return min(self.nlist, self.nprobe_setting or default_nprobe(self.nlist))

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if value < 1:
            raise VectorIndexError(f"nprobe must be >= 1, not {value!r}")
        with self._lock:
            self.nprobe_setting = int(value)
            self._gpu_index = None

    @property
    def needs_rebuild(self) -> bool:
        """True when the kind no longer fits the size: an exact index at or past the threshold
        (loaded with a lower ``exact_threshold``), or an approximate one that shrank below half
        the threshold or grew past 4x the vectors its cells were trained on. Searches stay
        correct; ``rebuild`` from the store restores the intended speed and recall."""
        n = len(self)
        if self.kind == EXACT:
            return n >= self.exact_threshold
        return n < self.exact_threshold // 2 or n > 4 * self.trained_count

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._label_of

    def ids(self) -> list[str]:
        """Every id in the index, sorted."""
        with self._lock:
            return sorted(self._label_of)

    def __repr__(self) -> str:
        extra = f", nlist={self.nlist}, nprobe={self.nprobe}" if self.kind != EXACT else ""
        return f"VectorIndex(kind={self.kind!r}, dim={self.dim}, count={len(self)}{extra})"

    # -------------------------------------------------------------------------------------
    # Input checks

    def _check_vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        """[N, dim] finite unit vectors as contiguous float32, else VectorIndexError."""
        try:
            x = np.asarray(vectors)
        except (TypeError, ValueError) as exc:
            raise VectorIndexError(f"{what}: not an array ({exc})") from None
        if x.ndim != 2:
            raise VectorIndexError(f"{what} must be 2-D [N, {self.dim}], got shape {x.shape}")
        if x.shape[1] != self.dim:
            raise VectorIndexError(f"{what} have dimension {x.shape[1]}, the index {self.dim}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise VectorIndexError(f"{what} must be numbers, not {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        bad = _first_bad_row(x)
        if bad is not None:
            raise VectorIndexError(f"{what}: row {bad[0]} {bad[1]}")
        return x

    @staticmethod
    def _check_ids(ids: Sequence[str], n: int | None = None) -> list[str]:
        if isinstance(ids, str):
            raise VectorIndexError("ids must be a sequence of strings, not one string")
        ids = list(ids)
        for i in ids:
            if not isinstance(i, str) or not i:
                raise VectorIndexError(f"ids must be non-empty strings, got {i!r}")
        if n is not None and len(ids) != n:
            raise VectorIndexError(f"{len(ids)} ids for {n} vectors")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))
            raise VectorIndexError(f"id {dup!r} appears twice in one call")
        return ids

    # -------------------------------------------------------------------------------------
    # Updates

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add [N, dim] unit vectors under ``ids``; an id already present is replaced.

        An exact index that reaches ``exact_threshold`` vectors is rebuilt as approximate
        (trained on everything it then holds)."""
        x = self._check_vectors(vectors, "vectors")
        ids = self._check_ids(ids, len(x))
        if not ids:
            return
        with self._lock:
            replaced = [self._label_of[i] for i in ids if i in self._label_of]
            if self.kind == EXACT and len(self) - len(replaced) + len(ids) >= self.exact_threshold:
                old_ids, old_x = self._exact_contents()
                if replaced:
                    new = set(ids)
                    keep = np.array([i not in new for i in old_ids], dtype=bool)
                    old_ids = [i for i, kept in zip(old_ids, keep) if kept]
                    old_x = old_x[keep]
                self._build(Chunks.of(old_ids + ids, [old_x, x]))
                return
            self._remove_labels(replaced)
            self._append(ids, x)

    def remove(self, ids: Iterable[str]) -> int:
        """Remove ``ids`` (absent ones are ignored); returns how many were removed."""
        if isinstance(ids, str):
            raise VectorIndexError("ids must be a collection of strings, not one string")
        with self._lock:
            present = list(dict.fromkeys(i for i in ids if i in self._label_of))
            self._remove_labels([self._label_of[i] for i in present])
            return len(present)

    def rebuild(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Replace the whole content with ``items`` ((id, [dim] unit vector) pairs, e.g. every
        embedding in the store), choosing the kind by their number. Rows are buffered in
        chunks (N x dim float32 in memory at once, ~5 GB for 1M x 1 280), never as one list of
        arrays. A duplicate id or a bad vector raises before the index is touched."""
        chunks = Chunks(self.dim)
        seen: set[str] = set()
        for n, (item_id, vector) in enumerate(items):
            if not isinstance(item_id, str) or not item_id:
                raise VectorIndexError(f"item {n}: id must be a non-empty string, got {item_id!r}")
            if item_id in seen:
                raise VectorIndexError(f"item {n}: id {item_id!r} appears twice")
            seen.add(item_id)
            v = np.asarray(vector)
            if v.shape != (self.dim,) or not (np.issubdtype(v.dtype, np.floating)
                                             or np.issubdtype(v.dtype, np.integer)):
                raise VectorIndexError(f"item {n} ({item_id!r}): vector of shape {v.shape} "
                                       f"and type {v.dtype}, expected ({self.dim},) floats")
            chunks.append(item_id, v)
        for start, block in chunks.blocks():
            bad = _first_bad_row(block)
            if bad is not None:
                row = start + bad[0]
                raise VectorIndexError(f"item {row} ({chunks.ids[row]!r}): vector {bad[1]}")
        with self._lock:
            self._build(chunks)

    def _append(self, ids: list[str], x: np.ndarray) -> None:
        labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.int64)
        self._index.add_with_ids(x, labels)
        self._next_label += len(ids)
        for i, label in zip(ids, labels.tolist()):
            self._label_of[i] = label
            self._id_of[label] = i
        self._gpu_index = None

    def _remove_labels(self, labels: list[int]) -> None:
        if not labels:
            return
        faiss = faiss_module()
        arr = np.asarray(labels, dtype=np.int64)
        if self.kind == EXACT:
            # IndexIDMap2 tests every stored label against the selector: a hashed batch.
            selector = faiss.IDSelectorBatch(len(arr), faiss.swig_ptr(arr))
        else:
            # The IVF direct map (a hash table) removes listed labels without a scan, and
            # takes only an IDSelectorArray.
            selector = faiss.IDSelectorArray(len(arr), faiss.swig_ptr(arr))
        removed = self._index.remove_ids(selector)
        if removed != len(arr):
            raise RuntimeError(f"FAISS removed {removed} of {len(arr)} vectors: the id map "
                               "and the index disagree")
        for label in labels:
            del self._label_of[self._id_of.pop(label)]
        self._gpu_index = None

    def _exact_contents(self) -> tuple[list[str], np.ndarray]:
        """Ids and vectors of an exact index, in storage order (exact copies)."""
        faiss = faiss_module()
        n = self._index.ntotal
        labels = faiss.vector_to_array(self._index.id_map)
        x = self._index.index.reconstruct_n(0, n) if n else np.empty((0, self.dim), np.float32)
        return [self._id_of[int(label)] for label in labels], x

    def _build(self, chunks: Chunks) -> None:
        """Replace the content with ``chunks`` (ids unique, rows checked), in a fresh index of
        the kind their number calls for. The new index is complete before it replaces the
        old one, so a failure (memory) leaves the old content in place."""
        faiss = faiss_module()
        n = len(chunks)
        fresh = VectorIndex.__new__(VectorIndex)
        fresh.__dict__.update(self.__dict__)
        if n < self.exact_threshold:
            fresh._reset(EXACT)
        else:
            nlist = min(self.nlist_setting or default_nlist(n), n)
            train_n = min(n, max(self.train_size, 40 * nlist))
            rows = np.sort(np.random.default_rng(self.seed).choice(n, train_n, replace=False))
            index = faiss.index_factory(self.dim, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
            ivf = faiss.extract_index_ivf(index)
            ivf.cp.seed = self.seed
            # 10 k-means iterations instead of 25: the same recall on 200k x 1 280 shot
            # embeddings (bench/vector_search.py data), a third less training time.
            ivf.cp.niter = 10
            ivf.train(chunks.take(rows))
            # A hash table from label to (cell, offset) makes remove_ids O(removed) instead of
            # a scan of every cell.
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            fresh._reset(IVF_SQ8, index, trained_count=n, nlist=nlist)
        for ids, block in chunks.pairs():
            fresh._append(ids, block)
        self.__dict__.update(fresh.__dict__)

    # -------------------------------------------------------------------------------------
    # Search

    def search(self, queries: np.ndarray, k: int, exclude: set[str] | None = None, *,
               nprobe: int | None = None) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest ids of each of the [Q, dim] unit ``queries`` by inner product
        (cosine), as (id, score) pairs, best first, ties by id; ids in ``exclude`` are never
        returned. Rows are shorter than k only when the index holds fewer eligible vectors
        (or, approximate kind, when the scanned cells do).

        Scores of the approximate kind come from 8-bit codes: within about 1e-3 of the true
        cosine (a vector may score 1.001 against itself).

        ``nprobe`` overrides the index's for this call (approximate kind; ignored by exact):
        queries unlike anything in the catalogue (an uploaded picture of something never
        broadcast) need more cells scanned for the same recall than catalogue shots do."""
        q = self._check_vectors(queries, "queries")
        if nprobe is not None and (isinstance(nprobe, bool) or int(nprobe) != nprobe
                                   or nprobe < 1):
            raise VectorIndexError(f"nprobe must be a positive integer, not {nprobe!r}")
        if isinstance(k, bool) or int(k) != k or k < 0:
            raise VectorIndexError(f"k must be a non-negative integer, not {k!r}")
        k = int(k)
        if isinstance(exclude, str):
            raise VectorIndexError("exclude must be a set of ids, not one string")
        with self._lock:
            skip = np.array(sorted({self._label_of[i] for i in exclude or ()
                                    if i in self._label_of}), dtype=np.int64)
            eligible = len(self) - len(skip)
            want = min(k, eligible)
            if want == 0 or not len(q):
                return [[] for _ in range(len(q))]
            out: list[list[tuple[str, float]] | None] = [None] * len(q)
            todo = np.arange(len(q))
            fetch = min(eligible, want + 8)
            while len(todo):
                scores, labels = self._raw_search(q[todo], fetch, skip, nprobe)
                again = []
                for row, qi in enumerate(todo):
                    s, lab = scores[row], labels[row]
                    valid = lab >= 0
                    # The k-th score ties with the last one fetched: more tied vectors may lie
                    # outside the window, so widen it before choosing among them by id.
                    if (fetch < eligible and valid.all() and valid.sum() > want
                            and s[want - 1] == s[-1]):
                        again.append(qi)
                        continue
                    hits = sorted(((-float(sc), self._id_of[int(lb)])
                                   for sc, lb in zip(s[valid], lab[valid])))
                    out[qi] = [(i, -neg) for neg, i in hits[:want]]
                todo = np.asarray(again, dtype=np.int64)
                fetch = min(eligible, fetch * 4)
            return out  # type: ignore[return-value]

    def _raw_search(self, q: np.ndarray, k: int, skip: np.ndarray, nprobe: int | None
                    ) -> tuple[np.ndarray, np.ndarray]:
        faiss = faiss_module()
        nprobe = min(self.nlist, int(nprobe)) if nprobe and self.kind != EXACT else self.nprobe
        gpu = self._gpu() if k + len(skip) <= GPU_MAX_K else None
        if gpu is not None:
            if self.kind != EXACT:
                gpu.nprobe = nprobe
            # GPU indexes take no id selector: over-fetch by the excluded count and drop them.
            scores, labels = gpu.search(q, min(k + len(skip), self._index.ntotal))
            if len(skip):
                labels = np.where(np.isin(labels, skip), -1, labels)
                order = np.argsort(labels < 0, axis=1, kind="stable")
                scores = np.take_along_axis(scores, order, 1)[:, :k]
                labels = np.take_along_axis(labels, order, 1)[:, :k]
            return scores, labels
        selector = None
        if len(skip):
            batch = faiss.IDSelectorBatch(len(skip), faiss.swig_ptr(skip))
            selector = faiss.IDSelectorNot(batch)
        if self.kind == EXACT:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        else:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            if selector is not None:
                params.sel = selector
        return self._index.search(q, k, params=params)

    def _gpu(self):
        """The GPU copy of the index, made on first use after a change; None on CPU."""
        if self._gpus == 0 or not len(self):
            return None
        if self._gpu_index is None:
            faiss = faiss_module()
            if self._gpu_resources is None:
                self._gpu_resources = faiss.StandardGpuResources()
            self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._index)
        return self._gpu_index

    @staticmethod
    def gpu_count() -> int:
        """GPUs FAISS can use (0 for a CPU build such as faiss-cpu)."""
        faiss = faiss_module()
        return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
