"""Every frame of a range, shrunk to a thumbnail (TransNetV2's 48x27 RGB) as cheaply as
decoding allows: the planes of planar YUV are shrunk before any colour conversion (the fast
path of the content rule), and the decoder may skip its loop filter (deblocking changes
nothing a 48x27 thumbnail can show, and is a good part of H.264 decoding). Frame threads are
left as they are: with one decoding process per core they only add contention (measured)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from av.video.frame import VideoFrame

from indexer.media.cursor import _FrameCursor
from indexer.media.source import _EPS
from indexer.media.types import MediaInfo

WIDTH, HEIGHT = 48, 27


def _plane(frame: VideoFrame, i: int) -> np.ndarray:
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]


def _shrink(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area average down to (width, height); a plane over four times that is first shrunk to
    four times it bilinearly (area averaging all of a 1080p plane costs 50x more, and the
    bilinear taps still average 64 pixels per output pixel)."""
    if plane.shape[0] > 4 * height and plane.shape[1] > 4 * width:
        plane = cv2.resize(plane, (4 * width, 4 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(plane, (width, height), interpolation=cv2.INTER_AREA)


def tiny_rgb(frame: VideoFrame, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """[height, width, 3] uint8 RGB of ``frame``, area-averaged."""
    if frame.format.name in ("yuv420p", "yuvj420p") and frame.width >= 4 and frame.height >= 4:
        # I420 at twice the size (even, as I420 needs), converted, then halved
        w2, h2 = 2 * width, 2 * height
        i420 = np.empty((h2 * 3 // 2, w2), np.uint8)
        i420[:h2] = _shrink(_plane(frame, 0), w2, h2)
        chroma = i420[h2:].reshape(2, height, width)
        chroma[0] = _shrink(_plane(frame, 1), width, height)
        chroma[1] = _shrink(_plane(frame, 2), width, height)
        rgb = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")


def tiny_frames(
    path: Path, info: MediaInfo, start: float, end: float, *, fast_decode: bool = True
) -> Iterator[tuple[float, np.ndarray]]:
    """(time, thumbnail) for every frame with ``start <= time < end``, in order; the file is
    closed when the iterator ends or is closed."""
    with _FrameCursor(path, info) as cursor:
        if fast_decode:
            cc = cursor._src.stream.codec_context
            cc.options = {**cc.options, "skip_loop_filter": "all"}
        found = cursor.at_or_after(start)
        while found is not None and found[0] < end - _EPS:
            time_s, frame = found
            yield time_s, tiny_rgb(frame)
            found = cursor.following()
