"""The public sampling API: one call (:func:`sample_frames`) or a :class:`Sampler` built once
from the sampling settings; the ``interval`` and ``keyframes`` modes."""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from av.packet import Packet

from indexer.media.checks import _check_args, _range
from indexer.media.cursor import _FrameCursor, _to_rgb
from indexer.media.probing import probe
from indexer.media.shots import _check_detector, _sample_shots
from indexer.media.source import _EPS, _secs, _SeekFailed, _Source
from indexer.media.types import Frame, MediaInfo

if TYPE_CHECKING:
    from tvindex.settings import SamplingSettings

log = logging.getLogger(__name__)


def sample_frames(
    path: str | os.PathLike[str],
    mode: str = "interval",
    every_s: float = 10.0,
    *,
    start_s: float = 0.0,
    end_s: float | None = None,
    frames_per_shot: int = 1,
    shot_threshold: float = 27.0,
    min_shot_s: float = 0.6,
    max_side: int | None = None,
) -> Generator[Frame, None, None]:
    """Yield frames of a video, in time order, one at a time (memory stays bounded).

    Modes:
      - ``interval``: the first frame at or after each of ``start_s, start_s + every_s, ...``
        (seconds) before the end. Seeks to the key frame before each time and decodes forward,
        or just decodes forward when the next time is within a key-frame interval.
      - ``keyframes``: for each of those times, the key frame nearest to it (the one before or
        the one after), decoded on its own; frames between key frames are never decoded.
        A key frame nearest to two times is yielded once, so there may be fewer frames.
      - ``shots``: shot cuts from :func:`detect_shots`, then ``frames_per_shot`` frames spread
        evenly inside each shot (1 = the middle), each carrying its Shot. ``every_s`` is unused.

    ``start_s``/``end_s`` (seconds) restrict sampling to that part of the file; times stay
    file-relative. ``max_side`` (pixels) downscales each frame so its longest side is at most
    that, keeping the aspect ratio (area interpolation).

    Argument errors raise ValueError at once; file problems raise MediaError while iterating.
    The file is closed when iteration ends or the generator is closed (a ``break`` in a
    ``for`` loop over it, or ``.close()`` / ``contextlib.closing`` when you keep a reference).
    """
    _check_args(
        mode, every_s, start_s, end_s, frames_per_shot, shot_threshold, min_shot_s, max_side
    )
    sampler = Sampler(mode, every_s, frames_per_shot, shot_threshold, min_shot_s, max_side)
    return sampler.sample(path, start_s, end_s)


@dataclass(frozen=True)
class Sampler:
    """How to sample a video (the ``sampling`` settings), fixed once and used for many files.

    The fields mean what :func:`sample_frames`'s arguments of the same names mean (``mode``:
    ``interval``, ``keyframes`` or ``shots``); bad values raise ValueError when the Sampler is
    made. :meth:`frames` samples a file already probed (an indexer probes each episode once and
    passes the MediaInfo on); :meth:`sample` probes first, as :func:`sample_frames` does.
    """

    mode: str = "interval"
    every_s: float = 10.0
    frames_per_shot: int = 1
    shot_threshold: float = 27.0
    min_shot_s: float = 0.6
    max_side: int | None = None
    shot_detector: str = "content"
    transition_threshold: float = 0.5

    def __post_init__(self) -> None:
        self._check(0.0, None)
        _check_detector(self.shot_detector, self.transition_threshold)

    @classmethod
    def from_section(cls, section: SamplingSettings) -> Sampler:
        """The sampler a ``sampling`` settings section describes."""
        return cls(
            mode=section.mode,
            every_s=section.every_s,
            frames_per_shot=section.frames_per_shot,
            shot_threshold=section.shot_threshold,
            min_shot_s=section.min_shot_s,
            max_side=section.max_side,
            shot_detector=section.shot_detector,
            transition_threshold=section.transition_threshold,
        )

    def _check(self, start_s: float, end_s: float | None) -> None:
        _check_args(
            self.mode,
            self.every_s,
            start_s,
            end_s,
            self.frames_per_shot,
            self.shot_threshold,
            self.min_shot_s,
            self.max_side,
        )

    def frames(
        self,
        path: str | os.PathLike[str],
        info: MediaInfo,
        start_s: float = 0.0,
        end_s: float | None = None,
    ) -> Generator[Frame, None, None]:
        """Frames of ``path``, whose :func:`probe` gave ``info``; the file is opened for
        decoding but not probed again. Otherwise exactly :func:`sample_frames`: ValueError at
        once for a bad range, MediaError while iterating, the file closed with the generator.
        """
        self._check(start_s, end_s)
        path = Path(path)
        if self.mode == "interval":
            return _sample_interval(path, info, self.every_s, start_s, end_s, self.max_side)
        if self.mode == "keyframes":
            return _sample_keyframes(path, info, self.every_s, start_s, end_s, self.max_side)
        return _sample_shots(
            path,
            info,
            start_s,
            end_s,
            self.frames_per_shot,
            self.shot_threshold,
            self.min_shot_s,
            self.max_side,
            self.shot_detector,
            self.transition_threshold,
        )

    def sample(
        self, path: str | os.PathLike[str], start_s: float = 0.0, end_s: float | None = None
    ) -> Generator[Frame, None, None]:
        """Probe ``path`` (when iteration starts), then :meth:`frames`."""
        self._check(start_s, end_s)
        return self._probe_and_sample(Path(path), start_s, end_s)

    def _probe_and_sample(
        self, path: Path, start_s: float, end_s: float | None
    ) -> Generator[Frame, None, None]:
        yield from self.frames(path, probe(path), start_s, end_s)


def _sample_times(start: float, end: float, every_s: float) -> Iterator[float]:
    # k * every_s, not a running sum: no drift over a 2-hour file
    for k in itertools.count():
        t = start + k * every_s
        if t >= end - _EPS:
            return
        yield t


def _sample_interval(
    path: Path,
    info: MediaInfo,
    every_s: float,
    start_s: float,
    end_s: float | None,
    max_side: int | None,
) -> Generator[Frame, None, None]:
    start, end = _range(info, start_s, end_s)
    with _FrameCursor(path, info) as cursor:
        index = 0
        last_time = -math.inf
        for t in _sample_times(start, end, every_s):
            found = cursor.at_or_after(t)
            if found is None or found[0] >= end - _EPS:
                return
            time_s, frame = found
            if time_s <= last_time:  # times closer than a frame: one frame serves them all
                continue
            last_time = time_s
            yield Frame(_to_rgb(frame, max_side), time_s, index)
            index += 1


@dataclass
class _Key:
    time_s: float
    packet: Packet


def _sample_keyframes(
    path: Path,
    info: MediaInfo,
    every_s: float,
    start_s: float,
    end_s: float | None,
    max_side: int | None,
) -> Generator[Frame, None, None]:
    """Key frames only: packets are demuxed (cheap) to find them, and only they are decoded.

    For each time t we need the last key frame <= t and the first one after t. After a seek
    (when the gap is large) or by demuxing on from where we are, we walk key packets forward;
    both ways see the same key frames, so seekable and unseekable files give the same picks.
    """
    start, end = _range(info, start_s, end_s)
    src = _Source(path, info)
    try:
        can_seek = info.seekable and info.keyframe_interval_s is not None
        gap = 2.0 * (info.keyframe_interval_s or math.inf)
        step = max(1.0, info.keyframe_interval_s or 1.0)
        packets: Iterator[Packet] | None = None
        prev: _Key | None = None  # last key frame at or before t
        ahead: _Key | None = None  # first key frame after the previous t, already demuxed
        here = 0.0
        last_time = -math.inf
        index = 0
        for t in _sample_times(start, end, every_s):
            if packets is None or (can_seek and t - here > gap):
                prev = ahead = None
                if can_seek and t > gap:
                    try:
                        packets = src.seek_to_key(t, step)
                    except _SeekFailed as e:
                        log.info("%s: %s; reading sequentially", path, e)
                        can_seek = False
                        src.close()
                        src = _Source(path, info)
                        packets = src.packets()
                else:
                    packets = src.packets()
            if ahead is not None and ahead.time_s <= t + _EPS:
                prev, ahead = ahead, None
            if ahead is None:
                for pkt in packets:
                    pt = src.packet_time(pkt)
                    pt = src.here_s if pt is None else pt
                    here = pt
                    if not pkt.is_keyframe:
                        continue
                    if pt <= t + _EPS:
                        prev = _Key(pt, pkt)
                    else:
                        ahead = _Key(pt, pkt)
                        break
            candidates = [
                k for k in (prev, ahead) if k is not None and start - _EPS <= k.time_s < end
            ]
            if not candidates:
                continue
            # nearest to t; on a tie the earlier one
            pick = min(candidates, key=lambda k: (abs(k.time_s - t), k.time_s))
            if pick.time_s <= last_time + _EPS:
                continue
            frame = src.decode_key(pick.packet)
            if frame is None:
                log.warning("%s: key frame at %s did not decode", path, _secs(pick.time_s))
                continue
            last_time = pick.time_s
            yield Frame(_to_rgb(frame, max_side), pick.time_s, index)
            index += 1
    finally:
        src.close()

