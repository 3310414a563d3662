"""A seeded generator of broadcast-like test episodes with shot transitions at known frames.

The episode is built from the real photographs of ``$TVINDEX_SHARED_DIR/transfer`` (one photo
per shot), each shot a slow camera move over its photo (pan and zoom, Ken Burns), joined by
hard cuts, dissolves (``--dissolve-frames``, 12 by default) and fades through black (fade out,
0-3 black frames, fade in, ``--fade-frames`` each side), drawn with the ``--mix`` proportions
(70 % / 20 % / 10 % by default). It is encoded like broadcast files: H.264 (libx264), yuv420p,
a fixed GOP (``--gop``, 2 s = 50 frames at 25 fps, no scene-cut key frames, so key frames say
nothing about cuts), B-frames, a light film grain so the bit rate and the decoding cost are
those of real footage rather than of clean stills.

The ground truth goes to a JSON sidecar beside the video (``<out>.json``)::

    {"video": "ep.mp4", "fps": 25, "width": 1920, "height": 1080, "frames": 7500,
     "duration_s": 300.0, "gop": 50, "seed": 0, "mix": {...},
     "transitions": [{"type": "cut" | "dissolve" | "fade", "start_frame": 117,
                      "end_frame": 117, "start_s": 4.68, "end_s": 4.68, "centre_s": 4.68}, ...],
     "shots": [{"photo": "...jpg", "start_frame": 0, "end_frame": 128}, ...]}

Frame numbers count from 0 and spans are inclusive. A cut's span is the first frame of the new
shot (a detector reporting a cut at that frame's time is exact); a dissolve's is its mixed
frames; a fade's runs from the first darkened frame of the outgoing shot to the last darkened
frame of the incoming one. ``centre_s`` is the span's middle in seconds (frame ``k`` is at
``k / fps``).

Run: ``python bench/make_episode.py OUT.mp4 [--duration 300] [--width 1920 --height 1080]
[--seed 0] [--mix cut=0.7,dissolve=0.2,fade=0.1] [--preset veryfast] [--quick]``.
``--preset`` defaults to superfast (CABAC, deblocking and B-frames, as in broadcast files).
``--quick`` makes a small file for tests (480x270, 20 s, preset ultrafast) unless the sizes are
given. Prints one JSON line (where the files are, frames, seconds taken, frames per second).
Import :func:`make_episode` to use it from another benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

TYPES = ("cut", "dissolve", "fade")
DEFAULT_MIX = {"cut": 0.7, "dissolve": 0.2, "fade": 0.1}


def shared_transfer_dir() -> Path:
    env = os.environ.get("TVINDEX_SHARED_DIR")
    base = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared"
    return base / "transfer"


@dataclass
class _Shot:
    photo: Path
    start: int  # first frame (inclusive) the shot is visible in, transitions included
    length: int  # frames it is visible for, transitions included
    # camera move: crop centre (x, y, as fractions of the free range) and zoom, start and end
    move: tuple[float, float, float, float, float, float]


def parse_mix(text: str) -> dict[str, float]:
    """``cut=0.7,dissolve=0.2,fade=0.1`` -> proportions summing to 1."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in TYPES:
            raise ValueError(f"bad --mix entry {part!r}: expected NAME=WEIGHT, NAME in {TYPES}")
        weight = float(value)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"bad --mix weight {value!r} for {name}")
        mix[name] = weight
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("--mix weights sum to 0")
    return {name: mix.get(name, 0.0) / total for name in TYPES}


def _plan(
    n_frames: int,
    fps: float,
    photos: list[Path],
    rng: np.random.Generator,
    mix: dict[str, float],
    dissolve_frames: int,
    fade_frames: int,
    mean_shot_s: float,
) -> tuple[list[_Shot], list[dict]]:
    """Shots and transitions tiling ``n_frames`` frames."""
    # each shot shows some clean frames besides its transitions in and out
    min_len = max(2 * max(dissolve_frames, fade_frames) + 10, round(1.2 * fps))
    order = rng.permutation(len(photos))
    shots: list[_Shot] = []
    transitions: list[dict] = []
    pos = 0
    probs = np.array([mix[t] for t in TYPES])
    while True:
        # log-normal shot lengths around ``mean_shot_s`` (broadcast drama/documentary pacing)
        seconds = float(rng.lognormal(math.log(mean_shot_s) - 0.18, 0.6))
        length = max(min_len, min(round(seconds * fps), round(15 * fps)))
        last = pos + length + min_len > n_frames
        if last:
            length = n_frames - pos
        photo = photos[order[len(shots) % len(order)]]
        z0 = rng.uniform(1.0, 1.2)
        z1 = float(np.clip(z0 + rng.uniform(-0.12, 0.12), 1.0, 1.3))
        move = (rng.uniform(0, 1), rng.uniform(0, 1), z0, rng.uniform(0, 1), rng.uniform(0, 1), z1)
        shots.append(_Shot(photo, pos, length, move))
        if last:
            return shots, transitions
        kind = TYPES[int(rng.choice(len(TYPES), p=probs))]
        end = pos + length  # first frame after this shot
        if kind == "cut":
            nxt, span = end, (end, end)
        elif kind == "dissolve":
            nxt, span = end - dissolve_frames, (end - dissolve_frames, end - 1)
        else:
            hold = int(rng.integers(0, 4))
            nxt = end + hold
            span = (end - fade_frames, nxt + fade_frames - 1)
        a, b = span
        transitions.append({
            "type": kind,
            "start_frame": a,
            "end_frame": b,
            "start_s": round(a / fps, 6),
            "end_s": round(b / fps, 6),
            "centre_s": round((a + b) / 2 / fps, 6),
        })
        pos = nxt


class _Renderer:
    """Draws one shot's frame: its photo under a moving, zooming 16:9 window."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._cache: dict[Path, np.ndarray] = {}

    def photo(self, path: Path) -> np.ndarray:
        img = self._cache.get(path)
        if img is None:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise SystemExit(f"{path}: cannot read the photo")
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[path] = img
        return img

    def render(self, shot: _Shot, k: int) -> np.ndarray:
        img = self.photo(shot.photo)
        ph, pw = img.shape[:2]
        u = k / max(1, shot.length - 1)
        u = u * u * (3 - 2 * u)  # ease in and out, as a camera operator would
        x0, y0, z0, x1, y1, z1 = shot.move
        zoom = z0 + (z1 - z0) * u
        base_w = min(pw, ph * self.width / self.height)
        cw = base_w / zoom
        ch = cw * self.height / self.width
        cx = (pw - cw) * (x0 + (x1 - x0) * u * 0.6)
        cy = (ph - ch) * (y0 + (y1 - y0) * u * 0.6)
        s = self.width / cw
        m = np.array([[s, 0.0, -cx * s], [0.0, s, -cy * s]], dtype=np.float64)
        return cv2.warpAffine(img, m, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)


def _layers(shots: list[_Shot], n_frames: int, dissolve_frames: int, fade_frames: int,
            transitions: list[dict]) -> list[list[tuple[int, int, float]]]:
    """For each frame: the shots seen in it as (shot index, frame within shot, weight)."""
    frames: list[list[tuple[int, int, float]]] = [[] for _ in range(n_frames)]
    for i, shot in enumerate(shots):
        for k in range(shot.length):
            f = shot.start + k
            if 0 <= f < n_frames:
                frames[f].append((i, k, 1.0))
    for i, tr in enumerate(transitions):
        a, b = tr["start_frame"], tr["end_frame"]
        if tr["type"] == "dissolve":
            for j, f in enumerate(range(a, b + 1)):
                w = (j + 1) / (dissolve_frames + 1)
                frames[f] = [(s, k, (1 - w) if s == i else w) for s, k, _ in frames[f]]
        elif tr["type"] == "fade":
            out_end = shots[i].start + shots[i].length  # first frame after the outgoing shot
            for j, f in enumerate(range(a, out_end)):
                w = 1 - (j + 1) / fade_frames
                frames[f] = [(s, k, w) for s, k, _ in frames[f]]
            for j, f in enumerate(range(shots[i + 1].start, b + 1)):
                w = (j + 1) / fade_frames
                frames[f] = [(s, k, w) for s, k, _ in frames[f]]
    return frames


def make_episode(
    out: str | os.PathLike[str],
    *,
    duration_s: float = 300.0,
    width: int = 1920,
    height: int = 1080,
    fps: int = 25,
    seed: int = 0,
    mix: dict[str, float] | None = None,
    dissolve_frames: int = 12,
    fade_frames: int = 12,
    mean_shot_s: float = 4.5,
    gop: int | None = None,
    preset: str = "superfast",
    crf: int = 20,
    grain: float = 1.0,
    photos_dir: str | os.PathLike[str] | None = None,
) -> dict:
    """Write the episode to ``out`` and its ground truth to ``out`` + ``.json``; return the
    ground truth (with ``"json"`` and ``"seconds"`` added)."""
    t0 = time.perf_counter()
    out = Path(out)
    if width % 2 or height % 2 or width < 16 or height < 16:
        raise ValueError("width and height must be even and at least 16")
    if not 1 <= fps <= 120:
        raise ValueError("fps must be in 1..120")
    if dissolve_frames < 2 or fade_frames < 2:
        raise ValueError("dissolve and fade lengths must be at least 2 frames")
    mix = parse_mix(",".join(f"{k}={v}" for k, v in (mix or DEFAULT_MIX).items()))
    gop = gop or 2 * fps
    folder = Path(photos_dir) if photos_dir else shared_transfer_dir()
    photos = sorted(p for p in folder.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photographs in {folder} (set TVINDEX_SHARED_DIR)")
    n_frames = max(1, round(duration_s * fps))
    rng = np.random.default_rng(seed)
    shots, transitions = _plan(n_frames, fps, photos, rng, mix, dissolve_frames, fade_frames,
                               mean_shot_s)
    layers = _layers(shots, n_frames, dissolve_frames, fade_frames, transitions)
    renderer = _Renderer(width, height)
    # film grain: a few precomputed luma noise fields, added with saturation (cheap per frame)
    grains: list[tuple[np.ndarray, np.ndarray]] = []
    if grain > 0:
        for _ in range(4):
            noise = rng.normal(0.0, grain, size=(height, width))
            grains.append((np.clip(noise, 0, 255).astype(np.uint8),
                           np.clip(-noise, 0, 255).astype(np.uint8)))

    out.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(out), mode="w")
    try:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "preset": preset,
            "crf": str(crf),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2",
        }
        for f in range(n_frames):
            parts = layers[f]
            if len(parts) == 1 and parts[0][2] == 1.0:
                s, k, _ = parts[0]
                rgb = renderer.render(shots[s], k)
            else:
                acc = np.zeros((height, width, 3), np.float32)
                for s, k, w in parts:
                    if w > 0:
                        cv2.accumulateWeighted(renderer.render(shots[s], k), acc, w)
                rgb = cv2.convertScaleAbs(acc)
            i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
            if grains:
                y = i420[:height]
                plus, minus = grains[f % len(grains)]
                cv2.add(y, plus, dst=y)
                cv2.subtract(y, minus, dst=y)
            frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
            frame.pts = f
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()

    truth = {
        "video": out.name,
        "fps": fps,
        "width": width,
        "height": height,
        "frames": n_frames,
        "duration_s": n_frames / fps,
        "gop": gop,
        "seed": seed,
        "mix": mix,
        "dissolve_frames": dissolve_frames,
        "fade_frames": fade_frames,
        "counts": {t: sum(1 for x in transitions if x["type"] == t) for t in TYPES},
        "transitions": transitions,
        "shots": [{"photo": s.photo.name, "start_frame": s.start,
                   "end_frame": s.start + s.length - 1} for s in shots],
    }
    sidecar = out.with_name(out.name + ".json")
    sidecar.write_text(json.dumps(truth, indent=1) + "\n")
    return {**truth, "json": str(sidecar), "seconds": round(time.perf_counter() - t0, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the video to write (.mp4); the truth goes to OUT.json")
    ap.add_argument("--duration", type=float, default=None, help="seconds (default 300)")
    ap.add_argument("--width", type=int, default=None, help="pixels (default 1920)")
    ap.add_argument("--height", type=int, default=None, help="pixels (default 1080)")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix", default="cut=0.7,dissolve=0.2,fade=0.1",
                    help="transition proportions, NAME=WEIGHT for cut, dissolve, fade")
    ap.add_argument("--dissolve-frames", type=int, default=12)
    ap.add_argument("--fade-frames", type=int, default=12, help="frames of fade out (and in)")
    ap.add_argument("--mean-shot", type=float, default=4.5, help="mean shot length, seconds")
    ap.add_argument("--gop", type=int, default=None, help="frames per GOP (default 2 s)")
    ap.add_argument("--preset", default=None,
                    help="libx264 preset (default superfast: CABAC, deblocking, B-frames)")
    ap.add_argument("--crf", type=int, default=20)
    ap.add_argument("--grain", type=float, default=1.0, help="luma grain, std in levels")
    ap.add_argument("--photos", type=Path, default=None, help="default: shared/transfer")
    ap.add_argument("--quick", action="store_true",
                    help="small and fast, for tests: 480x270, 20 s, preset ultrafast")
    args = ap.parse_args(argv)
    quick = args.quick
    try:
        result = make_episode(
            args.out,
            duration_s=args.duration or (20.0 if quick else 300.0),
            width=args.width or (480 if quick else 1920),
            height=args.height or (270 if quick else 1080),
            fps=args.fps,
            seed=args.seed,
            mix=parse_mix(args.mix),
            dissolve_frames=args.dissolve_frames,
            fade_frames=args.fade_frames,
            mean_shot_s=args.mean_shot,
            gop=args.gop,
            preset=args.preset or ("ultrafast" if quick else "superfast"),
            crf=args.crf,
            grain=args.grain,
            photos_dir=args.photos,
        )
    except ValueError as e:
        print(f"make_episode: {e}", file=sys.stderr)
        return 2
    summary = {k: result[k] for k in ("video", "json", "frames", "duration_s", "width",
                                      "height", "counts", "seconds")}
    summary["video"] = str(Path(args.out))
    summary["frames_per_s"] = round(result["frames"] / max(result["seconds"], 1e-9), 1)
    summary["x_realtime"] = round(result["duration_s"] / max(result["seconds"], 1e-9), 2)
    summary["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
