"""Moving through frames: a cursor that walks forward to requested times (seeking when that
is cheaper), and the conversion of a decoded frame into the RGB array a Frame carries."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import cv2
import numpy as np
from av.video.frame import VideoFrame

from indexer.media.source import _EPS, _SEEK_TRIES, _secs, _SeekFailed, _Source
from indexer.media.types import MediaInfo

log = logging.getLogger(__name__)


class _FrameCursor:
    """Walks forward through a video to requested times, seeking when that is cheaper.

    Decoding forward from where we are costs the frames in between; seeking costs about half a
    GOP plus the seek. So we seek only when the gap to the next request exceeds the key-frame
    interval, and never on files where seeking does not work (then we read sequentially, which
    picks exactly the frames the seek path would: the first at or after each time).
    """

    def __init__(self, path: Path, info: MediaInfo) -> None:
        self._path, self._info = path, info
        self._src = _Source(path, info)
        self._can_seek = info.seekable and info.keyframe_interval_s is not None
        self._gap_s = max(info.keyframe_interval_s or math.inf, 1.0 / info.fps)
        self._step_s = max(1.0, info.keyframe_interval_s or 1.0)
        self._frames: Iterator[tuple[float, VideoFrame]] | None = None
        self._current: tuple[float, VideoFrame] | None = None

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def at_or_after(self, t: float) -> tuple[float, VideoFrame] | None:
        """The first frame with time >= ``t`` (None past the end). ``t`` must not decrease."""
        cur = self._current
        if cur is not None and cur[0] >= t - _EPS:
            return cur
        here = cur[0] if cur is not None else 0.0
        if self._can_seek and t - here > self._gap_s:
            self._frames = self._seek_or_read(t)
        elif self._frames is None:
            self._frames = self._src.decode(self._src.packets(), 0.0)
        for item in self._frames:
            self._current = item
            if item[0] >= t - _EPS:
                return item
        return None

    def following(self) -> tuple[float, VideoFrame] | None:
        """The frame after the current one (None at the end)."""
        assert self._frames is not None
        self._current = next(self._frames, None)
        return self._current

    def _seek_or_read(self, t: float) -> Iterator[tuple[float, VideoFrame]]:
        try:
            return self._seek(t)
        except _SeekFailed as e:
            log.info("%s: %s; reading sequentially", self._path, e)
            self._can_seek = False
            self._src.close()
            self._src = _Source(self._path, self._info)  # fresh demuxer, back at the start
            self._current = None
            return self._src.decode(self._src.packets(), 0.0)

    def _seek(self, t: float) -> Iterator[tuple[float, VideoFrame]]:
        back = 0.0
        for _ in range(_SEEK_TRIES):
            target = max(0.0, t - back)
            frames = self._src.decode(self._src.seek_to_key(target, self._step_s), target)
            first = next(frames, None)
            if first is None:
                return iter(())
            # A "key" packet the decoder cannot start from (open GOP, broken flags) makes it
            # drop pictures until one it can: the first frame then comes after ``t``.
            if first[0] <= t + _EPS or target <= 0.0:
                return itertools.chain([first], frames)
            back = max(2.0 * back, self._step_s)
        raise _SeekFailed(f"decoding after a seek to {_secs(t)} starts after it")


def _to_rgb(frame: VideoFrame, max_side: int | None) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    h, w = image.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)

