"""Shots: finding the shot boundaries with a detector of :mod:`indexer.media.shot_detectors`
(by default ``content``: colour change between consecutive frames, PySceneDetect's
ContentDetector score), and sampling frames inside each shot."""

from __future__ import annotations

import math
import os
from collections.abc import Generator
from pathlib import Path

from indexer.media.checks import _check_args, _range
from indexer.media.cursor import _FrameCursor, _to_rgb
from indexer.media.probing import probe
from indexer.media.shot_detectors import (
    DetectorOptions,
    check_shot_detector,
    create_shot_detector,
)
from indexer.media.source import _EPS
from indexer.media.types import Frame, MediaInfo, Shot


def detect_shots(
    path: str | os.PathLike[str],
    *,
    threshold: float = 27.0,
    min_shot_s: float = 0.6,
    start_s: float = 0.0,
    end_s: float | None = None,
    detector: str = "content",
    transition_threshold: float = 0.5,
) -> list[Shot]:
    """Find shots by decoding every frame (of the range) with the shot detector ``detector``
    (see :mod:`indexer.media.shot_detectors`: ``content``, ``gradual``, ``transnetv2``,
    ``hybrid``).

    ``content`` (the default): the score is PySceneDetect ContentDetector's (mean absolute
    change of hue, saturation and value between consecutive frames, OpenCV's 0..179 hue scale),
    computed on frames downscaled to 256 px wide; a frame scoring >= ``threshold`` starts a new
    shot unless the current one is shorter than ``min_shot_s`` seconds. ``threshold`` is also
    the cut rule of ``gradual`` and ``hybrid``; ``transition_threshold`` is TransNetV2's
    probability threshold (``transnetv2``, ``hybrid``). The shots tile ``[start_s, end)``
    exactly, in order. One decoding pass; memory is bounded whatever the length.
    """
    _check_args("shots", 1.0, start_s, end_s, 1, threshold, min_shot_s, None)
    _check_detector(detector, transition_threshold)
    path = Path(path)
    info = probe(path)
    start, end = _range(info, start_s, end_s)
    return _detect_shots(
        path, info, start, end, threshold, min_shot_s, detector, transition_threshold
    )


def _check_detector(detector: str, transition_threshold: float) -> None:
    check_shot_detector(detector)
    if not 0.0 < transition_threshold < 1.0:
        raise ValueError(f"transition_threshold must be in (0, 1), got {transition_threshold}")


def _detect_shots(
    path: Path,
    info: MediaInfo,
    start: float,
    end: float,
    threshold: float,
    min_shot_s: float,
    detector: str = "content",
    transition_threshold: float = 0.5,
) -> list[Shot]:
    options = DetectorOptions(threshold=threshold, transition_threshold=transition_threshold)
    return create_shot_detector(detector, options).shots(path, info, start, end, min_shot_s)


def _sample_shots(
    path: Path,
    info: MediaInfo,
    start_s: float,
    end_s: float | None,
    frames_per_shot: int,
    threshold: float,
    min_shot_s: float,
    max_side: int | None,
    detector: str = "content",
    transition_threshold: float = 0.5,
) -> Generator[Frame, None, None]:
    """Two passes: find the cuts (only the cut list is kept), then fetch the frames.

    Holding candidate frames during a single pass would need every frame of the current shot
    (the middle is only known at its end); a second pass costs at most one more decode and
    usually much less, since it seeks when shots are longer than a key-frame interval.
    """
    start, end = _range(info, start_s, end_s)
    shots = _detect_shots(
        path, info, start, end, threshold, min_shot_s, detector, transition_threshold
    )
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
