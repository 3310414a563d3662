"""Decoding throughput: every frame vs 10-second sampling (interval and key frames).

Prints one JSON object to stdout. For one video (default: vtest.avi from the shared kit) it
measures, each repeated ``--repeats`` times and reported as the median:

- ``decode_all``: demux and decode every frame (no colour conversion), plain PyAV: the cost of
  looking at everything, the baseline the sampling modes are compared with.
- ``decode_all_rgb``: the same plus conversion of every frame to RGB, what tagging every frame
  would need before any model runs.
- ``interval`` / ``keyframes``: ``indexer.media.sample_frames`` with the same ``--every``
  (probe included, RGB frames out, as the indexer gets them).

``frames_per_s`` counts frames produced (decoded, or sampled); ``x_realtime`` is seconds of
video covered per wall-clock second. ``speedup_keyframes_vs_decode_all`` is the ratio of wall
times. Run: ``python bench/decode.py [--video PATH] [--every 10] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av

from indexer.media import MediaInfo, probe, sample_frames

REPO = Path(__file__).resolve().parent.parent


def default_video() -> Path:
    """vtest.avi from $TVINDEX_SHARED_DIR, else from ../shared beside the repository."""
    env = os.environ.get("TVINDEX_SHARED_DIR")
    base = Path(env) if env else REPO.parent / "shared"
    return base / "media" / "video" / "vtest.avi"


def rates(wall_s: float, cpu_s: float, frames: int, video_s: float) -> dict[str, float]:
    return {
        "wall_s": round(wall_s, 5),
        "cpu_s": round(cpu_s, 5),
        "frames": frames,
        "frames_per_s": round(frames / wall_s, 1),
        "x_realtime": round(video_s / wall_s, 1),
    }


def decode_all(path: Path, rgb: bool) -> int:
    """Decode every frame with plain PyAV; returns the number of frames."""
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def sample(path: Path, mode: str, every_s: float) -> int:
    return sum(1 for _ in sample_frames(path, mode, every_s))


def bench_decoding(path: Path, info: MediaInfo, every_s: float, repeats: int) -> dict:
    """Median wall and CPU seconds per case; cases run interleaved, after one warm-up each
    (page cache, lazy imports), so a burst of load from elsewhere hits every case alike."""
    cases: dict[str, Callable[[], int]] = {
        "decode_all": lambda: decode_all(path, rgb=False),
        "decode_all_rgb": lambda: decode_all(path, rgb=True),
        "interval": lambda: sample(path, "interval", every_s),
        "keyframes": lambda: sample(path, "keyframes", every_s),
    }
    counts = {name: fn() for name, fn in cases.items()}
    walls: dict[str, list[float]] = {name: [] for name in cases}
    cpus: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            w0, c0 = time.perf_counter(), time.process_time()
            counts[name] = fn()
            walls[name].append(time.perf_counter() - w0)
            cpus[name].append(time.process_time() - c0)
    return {
        name: rates(
            statistics.median(walls[name]),
            statistics.median(cpus[name]),
            counts[name],
            info.duration_s,
        )
        for name in cases
    }


# ---------------------------------------------------------------------------------------------
# Per-frame cost of each registered tagger, on real frames of the same video.
def _tagger_settings(name: str, tmp: Path):
    """Settings that build ``name`` here. yolo and places365 have no real weights on these
    machines: their cost is measured with the same architectures and random weights (in the
    official file formats), which costs exactly what the real weights would."""
    import torch

    from tvindex.settings import load_settings

    shared = Path(os.environ.get("TVINDEX_SHARED_DIR", Path(__file__).resolve().parents[2]
                                 / "shared"))
    overrides: dict = {}
    env = {"TVINDEX_MODEL_DIR": str(shared / "models")}
    if name == "yolo":
        overrides["taggers.yolo.weights"] = "yolov8n.yaml"
    elif name == "places365":
        from indexer.taggers.places365 import build_network

        net = build_network("resnet18")
        torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
                   tmp / "resnet18_places365.pth.tar")
        (tmp / "categories_places365.txt").write_text(
            "".join(f"/c/category_{i} {i}\n" for i in range(365)))
        env["TVINDEX_MODEL_DIR"] = str(tmp)
    return load_settings(overrides=overrides, environ=env)


def bench_taggers(path: Path, info: MediaInfo, every_s: float, repeats: int) -> dict | None:
    import tempfile

    import torch

    from indexer.taggers import list_taggers, tagger_from_settings

    step = max(info.duration_s / 48, 1.0 / max(info.fps, 1.0))
    frames = [f.image for f in sample_frames(path, "interval", step, max_side=720)][:48]
    out: dict = {"frames": len(frames), "frame_size": list(frames[0].shape[:2]),
                 "torch_threads": torch.get_num_threads()}
    for name in list_taggers():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                tagger = tagger_from_settings(name, _tagger_settings(name, Path(tmp)))
            except Exception as exc:  # noqa: BLE001 - report, don't stop the bench
                out[name] = {"error": str(exc)}
                continue
            tagger.predict(frames[:4])  # warm-up (allocations, lazy init)
            times = []
            for _ in range(max(1, min(repeats, 3))):
                t0 = time.perf_counter()
                tagger.predict(frames)
                times.append(time.perf_counter() - t0)
            wall = statistics.median(times)
            out[name] = {"ms_per_frame": round(1000 * wall / len(frames), 2),
                         "frames_per_s": round(len(frames) / wall, 1),
                         "weights": "random (same architecture)" if name in ("yolo", "places365")
                         else "real"}
    return out


# ---------------------------------------------------------------------------------------------


def run(path: Path, every_s: float, repeats: int) -> dict:
    info = probe(path)
    decoding = bench_decoding(path, info, every_s, repeats)
    wall = {name: case["wall_s"] for name, case in decoding.items()}
    cpu = {name: case["cpu_s"] for name, case in decoding.items()}
    speedup = wall["decode_all"] / wall["keyframes"]
    result: dict = {
        "benchmark": "decode",
        "video": str(path),
        "duration_s": round(info.duration_s, 3),
        "size": f"{info.width}x{info.height}",
        "codec": info.codec,
        "fps": round(info.fps, 3),
        "frame_count": info.frame_count,
        "keyframe_interval_s": info.keyframe_interval_s,
        "seekable": info.seekable,
        "every_s": every_s,
        "repeats": repeats,
        "statistic": "median of interleaved runs after a warm-up",
        "decoding": decoding,
        "speedup_keyframes_vs_decode_all": round(speedup, 1),
        "speedup_keyframes_vs_decode_all_cpu": round(cpu["decode_all"] / cpu["keyframes"], 1),
        "speedup_keyframes_vs_decode_all_rgb": round(wall["decode_all_rgb"] / wall["keyframes"], 1),
        "speedup_interval_vs_decode_all": round(wall["decode_all"] / wall["interval"], 1),
        "target_speedup": 10.0,
        "meets_target": speedup >= 10.0,
        "note": note(info, every_s, decoding["keyframes"]["frames"], speedup),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "av": av.__version__,
        },
    }
    taggers = bench_taggers(path, info, every_s, repeats)
    if taggers is not None:
        result["taggers"] = taggers
    return result


def note(info: MediaInfo, every_s: float, key_frames: int, speedup: float) -> str:
    """Say what bounds the comparison on this file."""
    kf = info.keyframe_interval_s
    total = info.frame_count or round(info.duration_s * info.fps)
    samples = math.ceil(info.duration_s / every_s)
    if kf is None:
        return (
            "a single key frame: keyframes mode yields one frame, so the speed-up says how cheap "
            "that is, not how sampling scales"
        )
    text = (
        f"key frames every {kf:.2f} s, samples every {every_s:g} s: keyframes mode decoded "
        f"{key_frames} pictures instead of {total}"
    )
    if kf > every_s:
        text += (
            f"; the GOP is longer than the sampling step, so there are fewer key frames than "
            f"sampling times ({key_frames} vs {samples}) and interval mode must decode every "
            f"frame (a seek would land on a key frame before the previous sample)"
        )
    if speedup < 10.0:
        text += "; below the 10x target in this run (a loaded machine? compare cpu_s)"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="video file (default vtest.avi)")
    parser.add_argument("--every", type=float, default=10.0, help="sampling step, seconds")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    args = parser.parse_args(argv)
    path = args.video or default_video()
    if not path.is_file():
        parser.error(f"no video at {path} (pass --video or set TVINDEX_SHARED_DIR)")
    json.dump(run(path, args.every, max(1, args.repeats)), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
