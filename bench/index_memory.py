"""Peak resident memory of indexing one long episode, and that it does not grow with length.

Prints one JSON object to stdout (progress goes to stderr). For each episode length (default
2 h and 20 min; ``--quick``: 10 and 20 min) it

1. makes the episode from the shared footage (default ``vtest.avi``, 79.5 s) by stream-copy
   concatenation with PyAV: the packets are remuxed again and again with their pts/dts shifted
   by the source's duration, nothing is re-encoded. The file is written to a cache folder
   outside the repository ($TVINDEX_DATA_DIR/bench/index_memory, else
   /tmp/tvindex-bench/index_memory) and reused by later runs;
2. indexes it through the real pipeline in a child process (``indexer.indexing.run_index`` on a
   one-episode ``Catalogue``, taggers ``tflite-detector`` + ``timm-classifier`` on CPU, default
   sampling: ``interval`` every 10 s), into a fresh SQLite store in a temp folder;
3. measures the child's peak resident memory three ways: ``os.wait4``'s rusage of that child
   (``ru_maxrss``, the kernel's high-water mark), the child's own ``VmHWM`` from
   /proc/self/status at the end, and the parent's sampling of its ``VmRSS`` every 0.1 s
   (which also gives the RSS when the taggers were loaded, before the first frame).

Reported per length: episode duration, frames sampled, frames/s, wall time, peak RSS; then
the target check: every peak under 2 GB, and the longest episode's peak within 10 % (or 100 MB)
of the shortest's. Run: ``python bench/index_memory.py`` (``--quick``, ``--minutes 120 20``,
``--every 10``, ``--video PATH``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _synthetic as syn

TARGET_PEAK_BYTES = 2 * 1024**3
SAME_REL, SAME_ABS = 0.10, 100 * 2**20


# --- the long episode -----------------------------------------------------------------------
def concat_video(src: Path, minutes: float, out_dir: Path) -> tuple[Path, dict]:
    """Stream-copy ``src`` back to back until it lasts at least ``minutes``; cached."""
    import av

    with av.open(str(src)) as probe_c:
        probe_c.streams.video[0]  # raises when there is no video stream
        ext = src.suffix if probe_c.format.name in ("avi", "matroska,webm") else ".mkv"
    out = out_dir / f"{src.stem}-{minutes:g}min{ext}"
    meta_path = out.with_suffix(out.suffix + ".json")
    if out.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("source_size") == src.stat().st_size and meta.get("size") == out.stat().st_size:
            return out, meta | {"cached": True}
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with av.open(str(src)) as inp:
        ins = inp.streams.video[0]
        packets = [p for p in inp.demux(ins) if p.dts is not None or p.pts is not None]
        tb = ins.time_base
        first = min(p.pts if p.pts is not None else p.dts for p in packets)
        last = max((p.pts if p.pts is not None else p.dts) + (p.duration or 0) for p in packets)
        step = last - first
        if step <= 0 or not any(p.duration for p in packets):
            # no packet durations: one frame period from the average rate
            rate = ins.average_rate or ins.guessed_rate
            step = (last - first) + round(1 / (rate * tb))
        src_s = float(step * tb)
        copies = max(1, math.ceil(minutes * 60 / src_s))
        tmp = out.with_name(out.name + ".part" + out.suffix)
        with av.open(str(tmp), "w", format="avi" if ext == ".avi" else "matroska") as outc:
            os_ = outc.add_stream_from_template(ins)
            for c in range(copies):
                shift = c * step
                for p in packets:
                    q = av.Packet(bytes(p))
                    q.pts = None if p.pts is None else p.pts + shift
                    q.dts = None if p.dts is None else p.dts + shift
                    q.duration = p.duration
                    q.is_keyframe = p.is_keyframe
                    q.time_base = tb
                    q.stream = os_
                    outc.mux(q)
    tmp.replace(out)
    meta = {"source": str(src), "source_size": src.stat().st_size, "source_s": round(src_s, 3),
            "copies": copies, "duration_s": round(copies * src_s, 3),
            "size": out.stat().st_size, "make_s": round(time.perf_counter() - t0, 2)}
    meta_path.write_text(json.dumps(meta))
    return out, meta | {"cached": False}


# --- child: index one episode ---------------------------------------------------------------
def _vm(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def child(video: Path, db_dir: Path, every_s: float) -> int:
    """Runs in the child process: index one episode, print a JSON line to stdout."""
    from indexer.catalogue import Catalogue
    from indexer.frame_tagging import choose_embedder
    from indexer.indexing import run_index
    from search.backends.sqlite.store import SqliteStore
    from tvindex.core.records import EpisodeRecord, ProgrammeRecord

    t0 = time.perf_counter()
    settings = syn.bench_settings({"sampling.every_s": every_s,
                                   "paths.data_dir": str(db_dir)})
    taggers = syn.real_taggers(settings)
    t_load = time.perf_counter() - t0
    rss_loaded = _vm("VmRSS")
    print(json.dumps({"event": "loaded", "rss": rss_loaded}), flush=True)
    store = SqliteStore(db_dir / "catalogue.sqlite",
                        min_score=settings.aggregation.store_min_score,
                        top_k=settings.aggregation.store_top_k)
    cat = Catalogue([ProgrammeRecord("bench", "Bench")],
                    [EpisodeRecord("long", "bench", "Long episode", str(video))], "bench")
    report = run_index(cat, store, taggers, settings.sampling, settings.aggregation,
                       embedder=choose_embedder(taggers, settings.taggers.embedding),
                       batch_size=settings.taggers.batch_size, force=True, progress=True)
    state = store.episode("long")
    store.close()
    print(json.dumps({"event": "done", "load_taggers_s": round(t_load, 2),
                      "rss_after_loading_taggers": rss_loaded, "report": report.to_dict(),
                      "segments": state.n_segments, "episode_status": state.status,
                      "duration_s": state.duration_s, "vm_hwm": _vm("VmHWM"),
                      "vm_rss_end": _vm("VmRSS")}), flush=True)
    return 0


# --- parent ---------------------------------------------------------------------------------
def _rss_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def measure(video: Path, every_s: float, work: Path) -> dict:
    """Index ``video`` in a child process; wall time, frames, peak RSS."""
    db_dir = Path(tempfile.mkdtemp(prefix="store-", dir=work))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(video),
           "--child-db", str(db_dir), "--every", str(every_s)]
    samples: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = _rss_of(proc.pid)
            if rss is not None:
                samples.append((time.perf_counter() - t0, rss))
            stop.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    lines = proc.stdout.read().splitlines() if proc.stdout else []
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    th.join()
    wall = time.perf_counter() - t0
    events = [json.loads(x) for x in lines if x.startswith("{")]
    done = next((e for e in events if e.get("event") == "done"), None)
    if proc.returncode != 0 or done is None:
        raise SystemExit(f"indexing child failed (exit {proc.returncode}) on {video}")
    peak = usage.ru_maxrss * 1024  # Linux: kilobytes
    rep = done["report"]
    return {
        "frames_sampled": rep["frames"],
        "segments_written": done["segments"],
        "episode_status": done["episode_status"],
        "indexed_duration_s": done["duration_s"],
        "index_wall_s": rep["seconds"],
        "frames_per_s": rep["frames_per_s"],
        "video_x_realtime": round(done["duration_s"] / rep["seconds"], 1),
        "load_taggers_s": done["load_taggers_s"],
        "child_wall_s": round(wall, 2),
        "peak_rss_bytes": peak,
        "peak_rss_mb": round(peak / 2**20, 1),
        "vm_hwm_mb": round(done["vm_hwm"] / 2**20, 1) if done["vm_hwm"] else None,
        "sampled_max_rss_mb": round(max(r for _, r in samples) / 2**20, 1) if samples else None,
        "rss_after_loading_taggers_mb": (round(done["rss_after_loading_taggers"] / 2**20, 1)
                                         if done["rss_after_loading_taggers"] else None),
        "rss_growth_while_indexing_mb": (
            round((peak - done["rss_after_loading_taggers"]) / 2**20, 1)
            if done["rss_after_loading_taggers"] else None),
        "rss_at_end_mb": round(done["vm_rss_end"] / 2**20, 1) if done["vm_rss_end"] else None,
        "rss_samples": len(samples),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=None,
                    help="episode lengths in minutes (default 120 20; --quick 10 20)")
    ap.add_argument("--every", type=float, default=10.0, help="sampling interval, seconds")
    ap.add_argument("--video", type=Path, default=None,
                    help="source footage (default shared/media/video/vtest.avi)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder for the concatenated episodes (outside the repository)")
    ap.add_argument("--quick", action="store_true", help="10- and 20-minute episodes")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-db", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.child_db, args.every)

    t_run = time.perf_counter()
    minutes = args.minutes or ([10.0, 20.0] if args.quick else [120.0, 20.0])
    src = args.video or syn.shared_dir() / "media" / "video" / "vtest.avi"
    if not src.is_file():
        ap.error(f"no video at {src} (pass --video or set TVINDEX_SHARED_DIR)")
    cache = syn.check_outside_repo(args.cache or syn.scratch_dir("index_memory"))
    runs = []
    with tempfile.TemporaryDirectory(prefix="tvindex-index-memory-") as work:
        for m in minutes:
            video, meta = concat_video(src, m, cache)
            how = "cached" if meta["cached"] else f"made in {meta['make_s']} s"
            syn.log(f"{video.name}: {meta['duration_s']:.0f} s ({how}); "
                    "indexing in a child process...")
            r = measure(video, args.every, Path(work))
            syn.log(f"  {r['frames_sampled']} frames in {r['index_wall_s']} s, "
                    f"peak RSS {r['peak_rss_mb']} MB")
            runs.append({"minutes": m, "video": str(video),
                         "episode_duration_s": meta["duration_s"],
                         "stream_copies": meta["copies"], "video_bytes": meta["size"],
                         "made_in_s": None if meta["cached"] else meta["make_s"], **r})
    peaks = [r["peak_rss_bytes"] for r in runs]
    lo, hi = min(peaks), max(peaks)
    longest = max(runs, key=lambda r: r["episode_duration_s"])
    shortest = min(runs, key=lambda r: r["episode_duration_s"])
    same = abs(longest["peak_rss_bytes"] - shortest["peak_rss_bytes"]) <= max(
        SAME_ABS, SAME_REL * shortest["peak_rss_bytes"])
    out = {
        "benchmark": "index_memory",
        "source_video": str(src),
        "sampling": {"mode": "interval", "every_s": args.every},
        "taggers": list(syn.TAGGER_NAMES),
        "device": "cpu",
        "runs": runs,
        "peak_rss_mb": {f"{r['minutes']:g}min": r["peak_rss_mb"] for r in runs},
        "peak_ratio_longest_vs_shortest": round(
            longest["peak_rss_bytes"] / shortest["peak_rss_bytes"], 3),
        "peak_spread_mb": round((hi - lo) / 2**20, 1),
        "target": {"peak_limit_mb": TARGET_PEAK_BYTES // 2**20,
                   "all_under_limit": bool(hi < TARGET_PEAK_BYTES),
                   "independent_of_length": bool(same),
                   "rule": "longest peak within 10 % or 100 MB of the shortest",
                   "met": bool(hi < TARGET_PEAK_BYTES and same)},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg": [round(x, 2) for x in os.getloadavg()]},
        "run_wall_s": round(time.perf_counter() - t_run, 1),
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
