"""Shots: finding the cuts (colour change between consecutive frames, PySceneDetect's
ContentDetector score), and sampling frames inside each shot."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Generator
from pathlib import Path

import cv2
import numpy as np
from av.video.frame import VideoFrame

from indexer.media.checks import _check_args, _range
from indexer.media.cursor import _FrameCursor, _to_rgb
from indexer.media.probing import probe
from indexer.media.source import _EPS
from indexer.media.types import Frame, MediaInfo, Shot

# Width of the frames the shot detector compares (PySceneDetect's auto-downscale aims at 256 px):
# cuts are large colour changes, visible at any size, and small frames are cheap to convert.
_DETECT_WIDTH = 256


def detect_shots(
    path: str | os.PathLike[str],
    *,
    threshold: float = 27.0,
    min_shot_s: float = 0.6,
    start_s: float = 0.0,
    end_s: float | None = None,
) -> list[Shot]:
    """Find shots by decoding every frame (of the range) and scoring colour change.

    The score is PySceneDetect ContentDetector's (mean absolute change of hue, saturation and
    value between consecutive frames, OpenCV's 0..179 hue scale), computed on frames downscaled
    to 256 px wide; a frame scoring >= ``threshold`` starts a new shot unless the current one is
    shorter than ``min_shot_s`` seconds. The shots tile ``[start_s, end)`` exactly, in order.
    One decoding pass; memory is two small frames whatever the length.
    """
    _check_args("shots", 1.0, start_s, end_s, 1, threshold, min_shot_s, None)
    path = Path(path)
    info = probe(path)
    start, end = _range(info, start_s, end_s)
    return _detect_shots(path, info, start, end, threshold, min_shot_s)


def _small_hsv(frame: VideoFrame, width: int, height: int) -> np.ndarray:
    """[height, width, 3] uint8 HSV (OpenCV scale) of a frame; ``width``/``height`` even."""
    h, w = frame.height, frame.width
    if frame.format.name == "yuv420p" and h % 2 == 0 and w % 2 == 0:
        # Shrinking the planes before any colour conversion is 4x cheaper than letting swscale
        # convert and scale (measured on vtest.avi); bilinear is plenty to see a cut.
        yuv = frame.to_ndarray(format="yuv420p")
        u, v = yuv[h:].reshape(2, h // 2, w // 2)
        half = (width // 2, height // 2)
        i420 = np.concatenate(
            [
                cv2.resize(yuv[:h], (width, height), interpolation=cv2.INTER_LINEAR).ravel(),
                cv2.resize(u, half, interpolation=cv2.INTER_LINEAR).ravel(),
                cv2.resize(v, half, interpolation=cv2.INTER_LINEAR).ravel(),
            ]
        ).reshape(height * 3 // 2, width)
        bgr = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    else:
        bgr = frame.to_ndarray(format="bgr24", width=width, height=height, interpolation="AREA")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)


def _detect_shots(
    path: Path, info: MediaInfo, start: float, end: float, threshold: float, min_shot_s: float
) -> list[Shot]:
    # Our own 15 lines rather than scenedetect's ContentDetector object: its process_frame
    # signature changed between 0.6 (frame numbers) and 0.7 (FrameTimecode), and we work on
    # presentation times (variable frame rate files such as tree.avi) rather than frame counts.
    width = min(_DETECT_WIDTH, info.width) // 2 * 2 or 2
    height = max(2, round(info.height * width / max(1, info.width)) // 2 * 2)
    cuts: list[float] = []
    last_cut = start
    prev_hsv: np.ndarray | None = None
    with _FrameCursor(path, info) as cursor:
        found = cursor.at_or_after(start)
        while found is not None and found[0] < end - _EPS:
            time_s, frame = found
            hsv = _small_hsv(frame, width, height)
            if prev_hsv is not None:
                score = sum(cv2.mean(cv2.absdiff(hsv, prev_hsv))[:3]) / 3.0
                if score >= threshold and time_s - last_cut >= min_shot_s:
                    cuts.append(time_s)
                    last_cut = time_s
            prev_hsv = hsv
            found = cursor.following()
    # a last shot shorter than the minimum joins the one before it
    if cuts and end - cuts[-1] < min_shot_s:
        cuts.pop()
    bounds = [start, *cuts, end]
    return [Shot(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))]


def _sample_shots(
    path: Path,
    info: MediaInfo,
    start_s: float,
    end_s: float | None,
    frames_per_shot: int,
    threshold: float,
    min_shot_s: float,
    max_side: int | None,
) -> Generator[Frame, None, None]:
    """Two passes: find the cuts (only the cut list is kept), then fetch the frames.

    Holding candidate frames during a single pass would need every frame of the current shot
    (the middle is only known at its end); a second pass costs at most one more decode and
    usually much less, since it seeks when shots are longer than a key-frame interval.
    """
    start, end = _range(info, start_s, end_s)
    shots = _detect_shots(path, info, start, end, threshold, min_shot_s)
    with _FrameCursor(path, info) as cursor:
        index = 0
        last_time = -math.inf
        for shot in shots:
            length = shot.end_s - shot.start_s
            for j in range(frames_per_shot):
                t = shot.start_s + (j + 0.5) * length / frames_per_shot
                found = cursor.at_or_after(t)
                if found is None:
                    return
                time_s, frame = found
                # very short shots may have fewer frames than asked for: no repeats, no
                # frames borrowed from the next shot
                if time_s <= last_time or time_s >= shot.end_s - _EPS:
                    continue
                last_time = time_s
                yield Frame(_to_rgb(frame, max_side), time_s, index, shot)
                index += 1
