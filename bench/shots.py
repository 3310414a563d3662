"""Shot detection: precision, recall, F1 and speed of each shot detector on generated episodes.

Prints one JSON object to stdout. Episodes come from ``bench/make_episode.py`` (broadcast-like
1080p25 H.264, GOP 2 s, cuts, 12-frame dissolves and fades at known frames); give existing ones
with ``--episodes A.mp4 B.mp4`` (each with its ``.json`` sidecar) or let the script make
``--seeds`` of ``--duration`` seconds in a scratch folder outside the repository.

Matching rule (``tolerance``): a detected boundary at time ``t`` is frame ``round(t * fps)``;
it matches a true transition when that frame lies inside the transition's span (cut: the first
frame of the new shot; dissolve: its mixed frames; fade: from the first darkened frame to the
last) widened by ``--tolerance`` frames on each side (2 by default). Each transition matches at
most one detection (the one nearest its centre); other detections are false positives.
Precision, recall and F1 are micro-averaged over all episodes.

Speed: wall seconds per episode for ``detector.cuts`` (decoding included; the network's load
is timed apart as ``load_s``), measured in ``--rounds`` interleaved rounds (every detector on
every episode, then again); the median per episode, ``x_realtime`` = video seconds / median
seconds, ``spread`` = (max - min) / median over the rounds; ``decode-only`` (every frame
decoded, nothing else) runs in the same rounds and ``x_decode_only`` is its time over the
detector's (1.0 = as fast as decoding alone), the ratio to read on a loaded machine. The load average before and after is
recorded: this machine is shared, so compare detectors within one run only.

References: PySceneDetect's ContentDetector and AdaptiveDetector with their default settings
(``scenedetect`` is a test dependency), through the same matching.

Run: ``python bench/shots.py [--episodes A.mp4 ...] [--seeds 1 2 3] [--duration 120]
[--detectors content,gradual,hybrid,transnetv2] [--no-references] [--rounds 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _synthetic import check_outside_repo, log, scratch_dir
from make_episode import make_episode

TARGET_BEST_F1 = 0.97
TARGET_CPU_F1, TARGET_CPU_X = 0.95, 10.0


def match(truth: dict, times: list[float], tolerance: int) -> dict:
    """True positives, false positives, misses (by type) of ``times`` against ``truth``."""
    fps = truth["fps"]
    trs = truth["transitions"]
    used: set[int] = set()
    for t in times:
        f = round(t * fps)
        best: tuple[float, int] | None = None
        for i, tr in enumerate(trs):
            if i in used or not tr["start_frame"] - tolerance <= f <= tr["end_frame"] + tolerance:
                continue
            d = abs(f - (tr["start_frame"] + tr["end_frame"]) / 2)
            if best is None or d < best[0]:
                best = (d, i)
        if best is not None:
            used.add(best[1])
    missed: dict[str, int] = {}
    for i, tr in enumerate(trs):
        if i not in used:
            missed[tr["type"]] = missed.get(tr["type"], 0) + 1
    return {"tp": len(used), "fp": len(times) - len(used), "fn": len(trs) - len(used),
            "missed": missed}


def prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}


def _ours(name: str):
    from indexer.media.probing import probe
    from indexer.media.shot_detectors import create_shot_detector

    t0 = time.perf_counter()
    det = create_shot_detector(name)
    load_s = time.perf_counter() - t0

    def run(path: Path) -> list[float]:
        info = probe(path)
        return det.cuts(path, info, 0.0, info.duration_s, 0.6)

    return run, load_s, det


def _scenedetect(kind: str):
    import scenedetect

    def run(path: Path) -> list[float]:
        detector = (scenedetect.ContentDetector() if kind == "content"
                    else scenedetect.AdaptiveDetector())
        scenes = scenedetect.detect(str(path), detector)
        return [float(start.seconds) for start, _ in scenes[1:]]

    return run, 0.0, None


def _decode_only():
    """Every frame decoded and dropped (PyAV's default decoder set-up, as ``content`` uses):
    the baseline in the same rounds, so ratios hold however loaded the machine is."""
    import av

    def run(path: Path) -> list[float]:
        with av.open(str(path)) as container:
            for _ in container.decode(video=0):
                pass
        return []

    return run, 0.0, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", nargs="*", type=Path, default=None)
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3])
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--mix", default="cut=0.7,dissolve=0.2,fade=0.1")
    ap.add_argument("--detectors", default="content,gradual,hybrid,transnetv2")
    ap.add_argument("--no-references", action="store_true")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--tolerance", type=int, default=2)
    args = ap.parse_args(argv)

    from make_episode import parse_mix

    load_before = [round(x, 2) for x in os.getloadavg()]
    episodes: list[Path] = list(args.episodes or [])
    if not episodes:
        folder = check_outside_repo(scratch_dir("shots"))
        for seed in args.seeds:
            out = folder / f"episode-{seed}-{int(args.duration)}s.mp4"
            if not (out.is_file() and Path(str(out) + ".json").is_file()):
                log(f"making {out}")
                make_episode(out, duration_s=args.duration, seed=seed, mix=parse_mix(args.mix))
            episodes.append(out)
    truths = {p: json.loads(Path(str(p) + ".json").read_text()) for p in episodes}

    runners: dict[str, tuple] = {"decode-only": _decode_only()}
    for name in [d for d in args.detectors.split(",") if d]:
        runners[name] = _ours(name)
    if not args.no_references:
        runners["scenedetect-content"] = _scenedetect("content")
        runners["scenedetect-adaptive"] = _scenedetect("adaptive")

    times: dict[str, dict[Path, list[float]]] = {n: {p: [] for p in episodes} for n in runners}
    found: dict[str, dict[Path, list[float]]] = {n: {} for n in runners}
    for r in range(args.rounds):
        for p in episodes:
            for name, (run, _, _) in runners.items():
                t0 = time.perf_counter()
                cuts = run(p)
                times[name][p].append(time.perf_counter() - t0)
                found[name].setdefault(p, cuts)
                log(f"round {r} {p.name} {name}: {times[name][p][-1]:.1f} s, {len(cuts)} cuts")

    video_s = sum(truths[p]["duration_s"] for p in episodes)
    results: dict[str, dict] = {}
    decode_s = sum(statistics.median(times["decode-only"][p]) for p in episodes)
    results: dict[str, dict] = {"decode-only": {"seconds": round(decode_s, 2),
                                                "x_realtime": round(video_s / decode_s, 2)}}
    for name, (_, load_s, det) in runners.items():
        if name == "decode-only":
            continue
        tp = fp = fn = 0
        missed: dict[str, int] = {}
        per_episode = {}
        for p in episodes:
            m = match(truths[p], found[name][p], args.tolerance)
            tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
            for k, v in m["missed"].items():
                missed[k] = missed.get(k, 0) + v
            per_episode[p.name] = prf(m["tp"], m["fp"], m["fn"])["f1"]
        medians = [statistics.median(times[name][p]) for p in episodes]
        spreads = [(max(v) - min(v)) / statistics.median(v) for v in times[name].values()]
        entry = {**prf(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn, "missed": missed,
                 "f1_per_episode": per_episode, "seconds": round(sum(medians), 2),
                 "x_realtime": round(video_s / sum(medians), 2),
                 "x_decode_only": round(decode_s / sum(medians), 3), "load_s": round(load_s, 2),
                 "spread": round(max(spreads), 3)}
        if det is not None and hasattr(det, "blocks_total"):
            entry["transnet_blocks_share"] = round(det.blocks_run / max(1, det.blocks_total), 3)
        results[name] = entry

    ours = {n: v for n, v in results.items() if "f1" in v and not n.startswith("scenedetect")}
    best = max(ours, key=lambda n: ours[n]["f1"]) if ours else None
    cpu_ok = [n for n, v in ours.items()
              if v["f1"] >= TARGET_CPU_F1 and v["x_realtime"] >= TARGET_CPU_X]
    print(json.dumps({
        "benchmark": "shots",
        "episodes": [{"video": str(p), "duration_s": truths[p]["duration_s"],
                      "width": truths[p]["width"], "height": truths[p]["height"],
                      "counts": truths[p]["counts"]} for p in episodes],
        "transitions": sum(len(truths[p]["transitions"]) for p in episodes),
        "tolerance_frames": args.tolerance,
        "rounds": args.rounds,
        "detectors": results,
        "targets": {
            "best": best,
            "best_f1_ge_0.97": bool(best and ours[best]["f1"] >= TARGET_BEST_F1),
            "cpu_path_10x_f1_0.95": cpu_ok,
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before,
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
