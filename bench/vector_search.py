"""Vector search over a million shot embeddings: exact against the approximate index.

Prints one JSON object to stdout (progress goes to stderr). Steps:

1. Synthetic embeddings (``synthesise``): ``--n`` shots (default 1 000 000) of dimension
   ``--dim`` (default 1 280, the pooled features of EfficientNet-B0/Lite0, the student's
   backbone), 100 shots per episode and 20 episodes per programme (the catalogue shape of
   ``bench/query_latency.py``). Each shot is ``relu(b + (z * lam) @ A)`` L2-normalised, with
   ``z`` = programme latent + episode offset + shot noise in 256 latent dimensions: like
   pooled CNN features they are non-negative, sparse and low-rank, and shots of one episode
   or programme look alike. The parameters were set so that the statistics below match the
   real EfficientNet-Lite0 pooled features of the 446 photographs in ``shared/transfer``
   (measured once: mean cosine of unrelated images 0.213, 240 principal components for 90 %
   of the variance of 446 images, 47 % zero entries); the run reports the synthetic values.
2. Three query sets, none of them in the index: ``catalogue`` (new shots of indexed
   episodes: "similar shots" and query-by-example with a frame of archive footage),
   ``new_episode`` (shots of unindexed episodes of indexed programmes: a new broadcast
   against the archive) and ``new_programme`` (shots of programmes absent from the
   catalogue: the worst case, whose nearest neighbours are barely nearer than any shot).
3. Exact search: ``VectorIndex`` forced to the exact kind (``IndexFlatIP``): build time,
   memory, single-query latency (``--single-exact`` queries) and batches of ``--batch``
   queries over every query set; its top-10 is the ground truth.
4. Approximate search: ``VectorIndex`` with its defaults, built through ``rebuild`` (the path
   of ``tvindex vectors rebuild``: (id, vector) pairs as the store yields them). Build time,
   bytes per vector (saved files), save/load time, peak resident memory; then for each
   ``--nprobe`` value recall@10 per query set (and, for new programmes, the ratio of the
   summed top-10 scores to the exact ones), single-query and batch latency and queries/s.
5. The target: recall@10 >= 0.95 on the catalogue and new-episode queries at >= 10x the
   exact queries/s, single queries and batches, at the default nprobe.
6. ``--compare``: the alternatives that ``search/vectors.py`` did not choose, built with raw
   FAISS on the same data and measured the same way: PQ alone (IVF + 128 x 4-bit fast-scan
   codes), the same PQ re-ranked from 8-bit codes (``Refine(SQ8)``), IVF-Flat and HNSW32
   (build time, bytes per vector, recall@10, queries/s). Slow at 1M; run it with
   ``--n 200000``.

Memory: peak resident memory is measured per phase (the kernel's high-water mark, reset
through ``/proc/self/clear_refs`` where allowed); the data themselves are n x dim float32
(5.1 GB at 1M x 1 280) and the exact index holds a second copy.

GPU: none is lent to this task; the JSON says so (FAISS GPU path untested here).

Run: ``python bench/vector_search.py`` (1M x 1280, 11 min on this shared 2-core machine,
12 GB peak), ``--quick`` (60 000 vectors, under a minute), ``--n 200000 --compare`` for the
alternatives (8 min), ``--n 200000 --dim 512`` for other sizes.

Measured 2026-11-23 (2 cores shared with other jobs, load average ~4; faiss-cpu 1.15.1):

- 1M x 1280, exact: 5 258 bytes per vector in memory, 0.9 queries/s single (p99 1.3 s),
  3.2 queries/s in batches of 100.
- 1M x 1280, IVF-SQ8 (nlist 1 024, default nprobe 16): built in 226 s (rebuild from pairs:
  k-means on 65 536 vectors + assigning and encoding 1M), 1 309 bytes per vector on disk
  (+ 23 for the id map), 1.6 GB resident, saved in 1.5 s, loaded in 1.8 s. recall@10
  0.989 (catalogue) and 0.983 (new episode) at 167 queries/s single (p99 9.9 ms) and 166 in
  batches: 186x and 51x exact. New programmes: recall@10 0.71 / 0.82 / 0.91 / 0.955 at
  nprobe 8 / 16 / 32 / 64 (47 queries/s at 64, still 14x exact in batches), with top-10
  scores within 0.8 % / 0.4 % / 0.2 % / 0.06 % of exact.
- 200k x 1280 ``--compare``: see the table in ``search/vectors.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.vectors import VectorIndex, default_nlist, default_nprobe

SHOTS_PER_EPISODE = 20 * 5  # 100
EPISODES_PER_PROGRAMME = 20
LATENT = 256
REAL_LITE0 = {"source": "EfficientNet-Lite0 pooled features of the 446 shared/transfer photos",
              "cos_unrelated_mean": 0.213, "pcs_for_90pct_of_446": 240, "zero_fraction": 0.467}


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Synthetic embeddings


class Synthesiser:
    """Hierarchical latent model -> non-negative, L2-normalised [*, dim] float32 embeddings."""

    def __init__(self, dim: int, n_episodes: int, seed: int = 0, alpha: float = 0.1,
                 bias: float = -0.6, bias_sd: float = 0.3, episode_sd: float = 0.7,
                 shot_sd: float = 0.8) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        lam = np.arange(1, LATENT + 1, dtype=np.float32) ** -alpha
        self.lam = lam / np.sqrt((lam ** 2).sum())  # latent scales: a mild power law
        self.a = rng.standard_normal((LATENT, dim), dtype=np.float32)
        self.b = (bias + bias_sd * rng.standard_normal(dim)).astype(np.float32)
        self.episode_sd, self.shot_sd = episode_sd, shot_sd
        n_programmes = -(-n_episodes // EPISODES_PER_PROGRAMME)
        self.programmes = rng.standard_normal((n_programmes, LATENT), dtype=np.float32)
        self.episodes = self.new_episodes(np.arange(n_episodes) // EPISODES_PER_PROGRAMME)

    def new_episodes(self, programme_of: np.ndarray, programmes: np.ndarray | None = None):
        p = self.programmes if programmes is None else programmes
        return p[programme_of] + self.episode_sd * self.rng.standard_normal(
            (len(programme_of), LATENT), dtype=np.float32)

    def shots(self, episode_latents: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """One shot per row of ``episode_latents`` [m, LATENT] -> [m, dim] unit vectors."""
        z = episode_latents + self.shot_sd * self.rng.standard_normal(
            episode_latents.shape, dtype=np.float32)
        x = np.matmul(z * self.lam, self.a, out=out)
        x += self.b
        np.maximum(x, 0, out=x)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def catalogue(self, n: int, chunk: int = 32768) -> np.ndarray:
        x = np.empty((n, self.a.shape[1]), np.float32)
        for start in range(0, n, chunk):
            rows = np.arange(start, min(n, start + chunk))
            self.shots(self.episodes[rows // SHOTS_PER_EPISODE], out=x[rows[0]:rows[-1] + 1])
        return x

    def queries(self, q: int) -> dict[str, np.ndarray]:
        rng = self.rng
        n_prog = len(self.programmes)
        catalogue = self.shots(self.episodes[rng.integers(0, len(self.episodes), q)])
        new_episode = self.shots(self.new_episodes(rng.integers(0, n_prog, q)))
        fresh = rng.standard_normal((max(1, q // 10), LATENT), dtype=np.float32)
        new_programme = self.shots(self.new_episodes(rng.integers(0, len(fresh), q), fresh))
        return {"catalogue": catalogue, "new_episode": new_episode,
                "new_programme": new_programme}


def shot_ids(n: int) -> list[str]:
    return [f"ep{i // SHOTS_PER_EPISODE:06d}@{i % SHOTS_PER_EPISODE}" for i in range(n)]


def data_statistics(x: np.ndarray, seed: int = 1) -> dict:
    """The statistics matched against the real features (REAL_LITE0), on samples."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(x), (2, 20000))
    prog = np.arange(len(x)) // (SHOTS_PER_EPISODE * EPISODES_PER_PROGRAMME)
    unrelated = prog[i] != prog[j]
    sample = x[rng.choice(len(x), min(len(x), 446), replace=False)].astype(np.float64)
    s = np.linalg.svd(sample - sample.mean(0), compute_uv=False) ** 2
    pcs = int(np.searchsorted(np.cumsum(s) / s.sum(), 0.9)) + 1
    same = np.arange(0, len(x) - 1, max(1, len(x) // 5000))
    same = same[same // SHOTS_PER_EPISODE == (same + 1) // SHOTS_PER_EPISODE]
    return {"cos_unrelated_mean": round(float((x[i[unrelated]] * x[j[unrelated]]).sum(1).mean()), 3),
            "cos_same_episode_mean": round(float((x[same] * x[same + 1]).sum(1).mean()), 3),
            "pcs_for_90pct_of_446": pcs,
            "zero_fraction": round(float((x[:20000] == 0).mean()), 3)}


# ---------------------------------------------------------------------------------------------
# Measurement helpers


class Memory:
    """Resident memory (bytes) now and its high-water mark since ``reset``."""

    def __init__(self) -> None:
        self.can_reset = self._clear()

    @staticmethod
    def _clear() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.can_reset:
            self._clear()

    @staticmethod
    def _status(key: str) -> int:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak(self) -> int:
        return self._status("VmHWM")


def ms_stats(seconds: list[float]) -> dict:
    a = np.asarray(seconds) * 1000
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "queries_per_s": round(1000 / float(a.mean()), 2)}


def time_single(index: VectorIndex, queries: np.ndarray, k: int = 10) -> dict:
    index.search(queries[:1], k)  # warm-up
    times = []
    for row in queries:
        t = time.perf_counter()
        index.search(row[None], k)
        times.append(time.perf_counter() - t)
    return ms_stats(times)


def time_batches(index: VectorIndex, queries: np.ndarray, batch: int, k: int = 10,
                 repeats: int = 1):
    """Latency of each batch of ``batch`` queries; queries/s over all of them; the results."""
    times, results = [], []
    for r in range(repeats):
        for start in range(0, len(queries), batch):
            t = time.perf_counter()
            out = index.search(queries[start:start + batch], k)
            times.append(time.perf_counter() - t)
            if r == 0:
                results.extend(out)
    a = np.asarray(times) * 1000
    stats = {"batch_size": batch, "batches": len(a),
             "p50_ms_per_batch": round(float(np.percentile(a, 50)), 2),
             "p99_ms_per_batch": round(float(np.percentile(a, 99)), 2),
             "queries_per_s": round(float(len(queries) * repeats / (a.sum() / 1000)), 2)}
    return stats, results


def recall_at_10(got, truth) -> float:
    return round(float(np.mean([len({i for i, _ in g} & {i for i, _ in t}) / 10
                                for g, t in zip(got, truth)])), 4)


def score_ratio(got, truth) -> float:
    """Summed top-10 scores found / summed exact top-10 scores (1.0 = as similar as exact)."""
    return round(float(np.mean([sum(s for _, s in g) / sum(s for _, s in t)
                                for g, t in zip(got, truth)])), 4)


def compare(x: np.ndarray, all_q: np.ndarray, truth, sets: dict, nlist: int,
            nprobes: list[int], batch: int, seed: int) -> list[dict]:
    """Raw FAISS alternatives on the same data; results keyed by row position."""
    import faiss

    n, dim = x.shape
    ids = [str(i) for i in range(n)]  # the truth's ids are shot ids: map positions back
    truth_pos = [[(str(int(i.split("@")[0][2:]) * SHOTS_PER_EPISODE + int(i.split("@")[1])), s)
                  for i, s in row] for row in truth]
    rng = np.random.default_rng(seed)
    train = x[np.sort(rng.choice(n, min(n, max(65_536, 40 * nlist)), replace=False))]
    ip = faiss.METRIC_INNER_PRODUCT
    specs = [(f"IVF{nlist},PQ{dim // 10}x4fs", "nprobe", nprobes),
             (f"IVF{nlist},PQ{dim // 10}x4fs,Refine(SQ8)", "nprobe", nprobes),
             (f"IVF{nlist},Flat", "nprobe", nprobes[:2]),
             ("HNSW32,Flat", "efSearch", [64, 128, 256])]
    rows = []
    for spec, knob, values in specs:
        index = faiss.index_factory(dim, spec, ip)
        t = time.perf_counter()
        if not index.is_trained:
            index.train(train)
        if spec.startswith("HNSW"):
            faiss.downcast_index(index).hnsw.efConstruction = 40
        index.add(x)
        build = time.perf_counter() - t
        size = faiss.serialize_index(index).nbytes
        log(f"compare {spec}: built in {build:.1f} s, {size / n:.0f} B/vector")
        for value in values:
            if knob == "nprobe":
                faiss.extract_index_ivf(index).nprobe = value
                if "Refine" in spec:
                    faiss.downcast_index(index).k_factor = 10
            else:
                faiss.downcast_index(index).hnsw.efSearch = value
            got, times = [], []
            for start in range(0, len(all_q), batch):
                t = time.perf_counter()
                d, lab = index.search(all_q[start:start + batch], 10)
                times.append(time.perf_counter() - t)
                got.extend([[(ids[j], float(v)) for j, v in zip(li, di) if j >= 0]
                            for li, di in zip(lab, d)])
            single = []
            for q in all_q[:200]:
                t = time.perf_counter()
                index.search(q[None], 10)
                single.append(time.perf_counter() - t)
            rows.append({"index": spec, knob: value, "build_s": round(build, 1),
                         "bytes_per_vector": round(size / n, 1),
                         "recall_at_10": {name: recall_at_10(got[s], truth_pos[s])
                                          for name, s in sets.items()},
                         "batch_queries_per_s": round(len(all_q) / sum(times), 1),
                         "single": ms_stats(single)})
            log("compare", rows[-1])
        del index
    return rows


def dir_bytes(path: Path) -> dict[str, int]:
    return {f.name: f.stat().st_size for f in sorted(path.iterdir()) if f.is_file()}


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    ap.add_argument("--dim", type=int, default=1280, help="embedding size (EfficientNet-B0: 1280)")
    ap.add_argument("--queries", type=int, default=200, help="queries per query set")
    ap.add_argument("--batch", type=int, default=100, help="queries per batch")
    ap.add_argument("--single-exact", type=int, default=20,
                    help="single queries timed on the exact index (each scans everything)")
    ap.add_argument("--nprobe", default="", help="comma-separated nprobe values to sweep "
                    "(default: half, 1x, 2x and 4x the index's default)")
    ap.add_argument("--quick", action="store_true", help="60 000 vectors, 100 queries per set")
    ap.add_argument("--compare", action="store_true",
                    help="also measure the alternatives not chosen (PQ, PQ+refine, IVF-Flat, HNSW)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.queries, args.single_exact = 60_000, 100, 20
    import faiss

    mem = Memory()
    out: dict = {
        "benchmark": "vector_search", "date": dt.date.today().isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                    "python": platform.python_version(), "faiss": faiss.__version__,
                    "faiss_threads": faiss.omp_get_max_threads(),
                    "faiss_simd": faiss.get_compile_options()},
        "gpu": {"measured": False, "faiss_gpus": VectorIndex.gpu_count(),
                "note": "no GPU is lent to this task and faiss-cpu has no GPU support: the "
                        "index_cpu_to_gpu path of search/vectors.py is untested here"},
        "n": args.n, "dim": args.dim, "k": 10,
    }

    t0 = time.perf_counter()
    n_episodes = -(-args.n // SHOTS_PER_EPISODE)
    synth = Synthesiser(args.dim, n_episodes, seed=args.seed)
    x = synth.catalogue(args.n)
    queries = synth.queries(args.queries)
    ids = shot_ids(args.n)
    out["data"] = {"generate_s": round(time.perf_counter() - t0, 1),
                   "bytes": int(x.nbytes), "queries_per_set": args.queries,
                   "episodes": n_episodes, "programmes": len(synth.programmes),
                   "synthetic": data_statistics(x), "real_reference": REAL_LITE0}
    log("data", out["data"])
    all_q = np.concatenate(list(queries.values()))
    sets = {name: slice(i * args.queries, (i + 1) * args.queries)
            for i, name in enumerate(queries)}

    # -- exact ------------------------------------------------------------------------------
    mem.reset()
    rss0 = mem.rss()
    t = time.perf_counter()
    exact = VectorIndex(args.dim, exact_threshold=args.n + 1)
    exact.add(ids, x)
    build = time.perf_counter() - t
    log(f"exact built in {build:.1f} s")
    batch_stats, truth = time_batches(exact, all_q, args.batch)
    log("exact batches", batch_stats)
    single = time_single(exact, queries["catalogue"][:args.single_exact])
    log("exact single", single)
    out["exact"] = {"kind": exact.kind, "build_s": round(build, 1),
                    "index_rss_bytes": mem.rss() - rss0,
                    "bytes_per_vector": round((mem.rss() - rss0) / args.n),
                    "peak_rss_bytes": mem.peak(),
                    "peak_rss_above_data_bytes": mem.peak() - x.nbytes,
                    "single": single, "batch": batch_stats}
    del exact

    # -- approximate ------------------------------------------------------------------------
    mem.reset()
    rss0 = mem.rss()
    t = time.perf_counter()
    approx = VectorIndex(args.dim)
    approx.rebuild(zip(ids, x))
    build = time.perf_counter() - t
    log(f"approximate built in {build:.1f} s: {approx!r}")
    rss_built = mem.rss()
    scratch = Path(tempfile.mkdtemp(prefix="tvindex-bench-vectors-"))
    try:
        t = time.perf_counter()
        approx.save(scratch)
        save_s = time.perf_counter() - t
        files = dir_bytes(scratch)
        t = time.perf_counter()
        loaded = VectorIndex.load(scratch)
        load_s = time.perf_counter() - t
        assert len(loaded) == len(approx)
        del loaded
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    index_file = sum(v for k, v in files.items() if k.startswith("index-"))
    default = approx.nprobe
    sweep = ([int(v) for v in args.nprobe.split(",")] if args.nprobe
             else sorted({max(1, default // 2), default, 2 * default, 4 * default}))
    out["approximate"] = {
        "kind": approx.kind, "nlist": approx.nlist, "default_nprobe": default,
        "train_vectors": min(args.n, max(approx.train_size, 40 * approx.nlist)),
        "build_s": round(build, 1), "build_path": "rebuild() over (id, vector) pairs",
        "index_rss_bytes": rss_built - rss0, "peak_rss_bytes": mem.peak(),
        "peak_rss_above_data_bytes": mem.peak() - x.nbytes,
        "peak_note": "the bench holds the n x dim source array; rebuild() buffers a second "
                     "copy of the items before building (the store streams them)",
        "files_bytes": files, "bytes_per_vector": round(index_file / args.n, 1),
        "id_map_bytes_per_vector": round((sum(files.values()) - index_file) / args.n, 1),
        "save_s": round(save_s, 1), "load_s": round(load_s, 1), "by_nprobe": [],
    }
    assert default_nlist(args.n) == approx.nlist and default_nprobe(approx.nlist) == default
    for nprobe in sweep:
        approx.nprobe = nprobe
        b_stats, got = time_batches(approx, all_q, args.batch, repeats=3)
        row = {"nprobe": nprobe,
               "recall_at_10": {name: recall_at_10(got[s], truth[s]) for name, s in sets.items()},
               "score_ratio_new_programme": score_ratio(got[sets["new_programme"]],
                                                         truth[sets["new_programme"]]),
               "single": time_single(approx, all_q), "batch": b_stats}
        log("approximate", row)
        out["approximate"]["by_nprobe"].append(row)

    # -- target -----------------------------------------------------------------------------
    head = next(r for r in out["approximate"]["by_nprobe"] if r["nprobe"] == default)
    speed_single = head["single"]["queries_per_s"] / out["exact"]["single"]["queries_per_s"]
    speed_batch = head["batch"]["queries_per_s"] / out["exact"]["batch"]["queries_per_s"]
    recall = min(head["recall_at_10"]["catalogue"], head["recall_at_10"]["new_episode"])
    out["target"] = {
        "rule": "recall@10 >= 0.95 (catalogue and new-episode queries) at >= 10x exact "
                "queries/s, single and batched, at the default nprobe",
        "nprobe": default, "recall_at_10": recall,
        "speedup_single": round(speed_single, 1), "speedup_batch": round(speed_batch, 1),
        "met": bool(recall >= 0.95 and speed_single >= 10 and speed_batch >= 10),
        "new_programme_recall_at_10": head["recall_at_10"]["new_programme"],
    }
    if args.compare:
        del approx
        out["alternatives"] = compare(x, all_q, truth, sets, default_nlist(args.n),
                                      sweep[:3], args.batch, args.seed)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_bytes_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
