"""What the media package hands out: the error it raises, what a probe learns about a file,
shots, and sampled frames."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


class MediaError(Exception):
    """A video file cannot be read. ``str(err)`` is ``"<path>: <what is wrong>"``, one line.

    ``path`` and ``reason`` are kept apart too, so a batch job can record the reason per file.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple[type[MediaError], tuple[Path, str]]:
        # Worker processes send failures back pickled; the default would lose ``reason``.
        return (MediaError, (self.path, self.reason))


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns about a file's (first real) video stream.

    ``duration_s``: seconds of video. ``fps``: mean frames per second actually present (the
    nominal rate unless the stream holds far fewer frames, as tree.avi does: 15 nominal, 2.3
    real). ``frame_count``: exact when the whole file was scanned, else the container's count,
    else None. ``keyframe_interval_s``: mean seconds between key frames over the first
    2 minutes; None when fewer than two were seen (one key frame: seeking cannot help).
    ``seekable``: whether seeking lands on a key frame at or before the requested time.
    ``frame_rate``: the stream's nominal rate as an exact fraction (30000/1001 for 29.97), for
    timecodes (``tvindex.core.timecode``). ``timecode``: the timecode of the file's first frame
    from its ``timecode`` tag (stream, tmcd data stream or container), None without one.
    ``vfr``: the frame intervals vary (timecodes of such a file are nominal).
    """

    path: Path
    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    frame_count: int | None
    keyframe_interval_s: float | None
    seekable: bool
    frame_rate: Fraction | None = None
    timecode: str | None = None
    vfr: bool = False


@dataclass(frozen=True)
class Shot:
    """A shot: ``[start_s, end_s)`` in file-relative seconds; ``index`` counts from 0."""

    index: int
    start_s: float
    end_s: float


@dataclass
class Frame:
    """One sampled frame.

    ``image``: [H, W, 3] uint8 RGB, C-contiguous. ``time_s``: presentation time in seconds from
    the start of the file. ``index``: 0-based position in this sampling run. ``shot``: the shot
    the frame represents (``shots`` mode only).
    """

    image: np.ndarray
    time_s: float
    index: int
    shot: Shot | None = None
