"""Probe video files and sample frames from them (every N seconds, key frames only, or per shot).

Decoding is PyAV (FFmpeg) throughout: it gives exact presentation timestamps and per-packet
key-frame flags, which OpenCV's ``VideoCapture`` hides; OpenCV's own seeking is also wrong on
some files (asked for 12 s of tree.avi it lands at 19 s). OpenCV is used only for pixel work on
decoded arrays, where it is the better tool: ``INTER_AREA`` downscaling (an exact box filter)
and the HSV conversion of the shot detector (the same hue scale as PySceneDetect's
ContentDetector, so its thresholds mean the same here).

Times are seconds from the first video frame of the file (the video stream's start time): the
first picture is at ``time_s == 0`` whatever clock the container uses (MPEG-TS starts at 1.4 s or
anywhere). Time ranges (``start_s``/``end_s``) are in the same file-relative seconds.

Errors: anything wrong with a file (missing, empty, not a video, truncated, corrupt) raises
:class:`MediaError` with one line naming the file and the problem, so a batch job can record the
reason and move on.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Self

import av
import cv2
import numpy as np
from av.container import InputContainer
from av.packet import Packet
from av.stream import Disposition
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

__all__ = ["Frame", "MediaError", "MediaInfo", "Shot", "detect_shots", "probe", "sample_frames"]

log = logging.getLogger(__name__)

MODES = ("interval", "keyframes", "shots")

# probe demuxes (never decodes) this much video to measure the key-frame spacing and frame rate;
# 2 minutes of packets is a fraction of a second of I/O even for HD broadcast files.
_SCAN_CAP_S = 120.0
# Seconds of float slack when comparing a frame time with a requested time.
_EPS = 1e-6
# A seek that lands after its target is retried this many times, each from twice as far back.
_SEEK_TRIES = 7
# Width of the frames the shot detector compares (PySceneDetect's auto-downscale aims at 256 px):
# cuts are large colour changes, visible at any size, and small frames are cheap to convert.
_DETECT_WIDTH = 256
_ERRORS = (av.error.FFmpegError, OSError)


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


# --------------------------------------------------------------------------------------------
# Opening files


def _secs(x: float) -> str:
    return f"{x:.1f} s"


def _why(err: BaseException) -> str:
    """FFmpeg's own words without the errno and file name PyAV adds."""
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def _sniff(path: Path) -> str | None:
    """Name the container family a file's first bytes announce, or None if none we know."""
    try:
        with path.open("rb") as f:
            head = f.read(400)
    except OSError:
        return None
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "an MP4/QuickTime file"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "an AVI file"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "a Matroska/WebM file"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "an MPEG-TS file"
    if head[:4] == b"\x00\x00\x01\xba":
        return "an MPEG-PS file"
    if head[:3] == b"FLV":
        return "an FLV file"
    if head[:4] == b"OggS":
        return "an Ogg file"
    if head[:4] == b"\x30\x26\xb2\x75":
        return "an ASF/WMV file"
    return None


def _open(path: Path) -> tuple[InputContainer, VideoStream]:
    """Open ``path`` and pick its video stream; every failure becomes a MediaError."""
    try:
        if path.is_dir():
            raise MediaError(path, "is a directory, not a video file")
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise MediaError(path, "no such file") from e
    except OSError as e:
        raise MediaError(path, f"cannot read: {_why(e)}") from e
    if size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except _ERRORS as e:
        kind = _sniff(path)
        if kind is None:
            raise MediaError(path, "not a video file (unrecognised format)") from e
        # An MP4 whose index (moov) was at the end and got cut off lands here.
        raise MediaError(
            path, f"truncated or corrupt: looks like {kind} but cannot be opened ({_why(e)})"
        ) from e
    # Cover art in MP4/MKV is a one-picture "video" stream; it is never the programme.
    videos = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not videos or videos[0].codec_context is None:
        fmt = container.format.name
        container.close()
        what = "no video stream" if not videos else "no decoder for its video codec"
        raise MediaError(path, f"not a video file ({what} in this {fmt} file)")
    return container, videos[0]


class _SeekFailed(Exception):
    """Seeking does not work on this file; read it sequentially instead."""


class _Source:
    """One open video stream with its clock: demuxes, seeks and decodes, translating errors.

    ``duration_s`` and ``fps`` are filled in by :func:`probe` (or from its MediaInfo); until
    then decoding does not check for truncation.
    """

    def __init__(self, path: Path, info: MediaInfo | None = None) -> None:
        self.path = path
        self.container, self.stream = _open(path)
        start = self.stream.start_time
        self._origin = start if start is not None else 0
        self.time_base = Fraction(self.stream.time_base)
        self._tb_num, self._tb_den = self.time_base.numerator, self.time_base.denominator
        self.fps = info.fps if info else _nominal_fps(self.stream) or 25.0
        self.duration_s = info.duration_s if info else None
        # True when the duration is the container's, which also spans audio and may outlast
        # the video by a few seconds: allow more before calling the file truncated.
        self.loose_duration = False
        self.here_s = 0.0  # time of the last packet or frame read, for error messages
        self._n_packets = 0  # packets since the start, for streams without timestamps
        self._n_frames = 0  # frames decoded since decoding (re)started

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clock
    def seconds(self, pts: int) -> float:
        # integer true division rounds once, exactly like float(Fraction), at a tenth the cost
        return (pts - self._origin) * self._tb_num / self._tb_den

    def pts(self, seconds: float) -> int:
        # floor: a seek target must never be after the requested time
        return self._origin + math.floor(Fraction(seconds) / self.time_base)

    def packet_time(self, pkt: Packet) -> float | None:
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        return self.seconds(ts) if ts is not None else None

    def slack_s(self) -> float:
        """How far short of the duration the data may end before we call the file truncated."""
        dur = self.duration_s or 0.0
        return max(10.0 if self.loose_duration else 2.0, 5.0 / self.fps, 0.005 * dur)

    def _corrupt(self, doing: str, err: BaseException) -> MediaError:
        of = f" of {_secs(self.duration_s)}" if self.duration_s else ""
        return MediaError(
            self.path,
            f"truncated or corrupt: {doing} failed at {_secs(self.here_s)}{of} ({_why(err)})",
        )

    # -- demuxing
    def packets(self) -> Iterator[Packet]:
        """Video packets from the current position on (the empty end-of-stream one dropped)."""
        demux = self.container.demux(self.stream)
        while True:
            try:
                pkt = next(demux)
            except StopIteration:
                return
            except _ERRORS as e:
                raise self._corrupt("demuxing", e) from e
            if pkt.size == 0:
                continue
            t = self.packet_time(pkt)
            if t is None:
                # Raw elementary streams carry no timestamps; they cannot seek either (probe
                # says so), so counting packets from the start gives their times.
                pkt_t = self._n_packets / self.fps
            else:
                pkt_t = t
            self._n_packets += 1
            self.here_s = pkt_t
            yield pkt

    def seek_to_key(self, t: float, step_s: float) -> Iterator[Packet]:
        """Packets starting at a key packet at or before ``t`` (or at the file's start).

        Returns an empty iterator when the data ends right at the landing point (truncated
        files). Raises _SeekFailed when seeking raises or keeps landing after ``t``.
        """
        back = 0.0
        for _ in range(_SEEK_TRIES):
            target = max(0.0, t - back)
            try:
                self.container.seek(
                    self.pts(target), stream=self.stream, backward=True, any_frame=False
                )
            except _ERRORS as e:
                raise _SeekFailed(f"seeking raised {_why(e)}") from e
            packets = self.packets()
            first = next(packets, None)
            if first is None:
                return iter(())
            if target <= 0.0:
                # At the start there is nothing earlier to find; a stream that begins mid-GOP
                # is decoded from its first packet, as sequential reading would.
                return itertools.chain([first], packets)
            # Formats without an index (MPEG-TS) land near the target on any packet, often after
            # the key frame we need: walk packets (no decoding) to the first key frame, and back
            # off further when that is after ``t`` (as JuliaIO/VideoIO.jl#467 does).
            key = first
            for key in itertools.chain([first], packets):
                kt = self.packet_time(key)
                if key.is_keyframe or (kt is not None and kt > t + _EPS):
                    break
            kt = self.packet_time(key)
            if key.is_keyframe and kt is not None and kt <= t + _EPS:
                return itertools.chain([key], packets)
            back = max(2.0 * back, step_s)
        raise _SeekFailed(f"seeking to {_secs(t)} keeps landing after it")

    # -- decoding
    def frame_time(self, frame: VideoFrame) -> float:
        # Frames without timestamps only come from unseekable raw streams, read from the start.
        t = self.seconds(frame.pts) if frame.pts is not None else self._n_frames / self.fps
        self._n_frames += 1
        return t

    def decode(
        self, packets: Iterator[Packet], from_s: float
    ) -> Iterator[tuple[float, VideoFrame]]:
        """Decoded (time_s, frame) pairs; checks at the end of the data that the file is whole.

        ``from_s`` is where decoding starts, for the message when not a single frame comes.
        """
        cc = self.stream.codec_context
        self._n_frames = 0
        last = from_s
        for pkt in itertools.chain(packets, [None]):  # None drains the decoder's delay
            try:
                frames = cc.decode(pkt)
            except _ERRORS as e:
                raise self._corrupt("decoding", e) from e
            for frame in frames:
                last = self.here_s = self.frame_time(frame)
                yield last, frame
        if self.duration_s is not None:
            end = last + 1.0 / self.fps
            if end < self.duration_s - self.slack_s():
                raise MediaError(
                    self.path,
                    f"truncated or corrupt: decoding stopped at {_secs(end)} "
                    f"of {_secs(self.duration_s)}",
                )

    def decode_key(self, pkt: Packet) -> VideoFrame | None:
        """Decode one key packet on its own (nothing before or after it is decoded)."""
        cc = self.stream.codec_context
        try:
            cc.flush_buffers()
            frames = cc.decode(pkt)
            if not frames:
                # Decoders with reordering delay (H.264 with B-frames) hold the picture back
                # until the next packet; draining releases it.
                frames = cc.decode(None)
            cc.flush_buffers()  # leave the decoder usable after draining
        except _ERRORS as e:
            raise self._corrupt("decoding", e) from e
        return frames[0] if frames else None


def _nominal_fps(stream: VideoStream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return None


# --------------------------------------------------------------------------------------------
# Probing


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Read a video file's metadata; raise MediaError if it is missing, empty, not a video,
    truncated or corrupt.

    Demuxes (without decoding) up to the first 2 minutes of video packets to measure key-frame
    spacing and the real frame rate, tries one seek to decide ``seekable``, and, for files
    longer than the scan, reads the packets of the last few seconds to make sure the data is
    all there. Typically a few milliseconds for short files, well under a second for long ones.
    """
    path = Path(path)
    with _Source(path) as src:
        return _probe(src)


def _probe(src: _Source) -> MediaInfo:
    path, stream = src.path, src.stream
    nominal = _nominal_fps(stream)
    declared, src.loose_duration = _declared_duration(src)
    cap = _SCAN_CAP_S if declared else None  # no known duration: scan all to measure it
    if nominal:
        src.fps = nominal
    src.duration_s = declared

    n = 0
    times: list[float] = []
    keys: list[float] = []
    reached_end = True
    for pkt in src.packets():
        t = src.packet_time(pkt)
        if cap is not None and t is not None and t > cap:
            reached_end = False
            break
        n += 1
        if t is not None:
            times.append(t)
            if pkt.is_keyframe:
                keys.append(t)
    if n == 0:
        raise MediaError(path, "truncated or corrupt: the video stream holds no data")

    measured = None
    if len(times) >= 2 and max(times) > min(times):
        measured = (len(times) - 1) / (max(times) - min(times))
    if nominal and (measured is None or abs(measured / nominal - 1.0) < 0.02):
        fps = nominal
    elif measured:
        fps = measured
    else:
        raise MediaError(path, "cannot tell the frame rate (no rate and no timestamps)")
    src.fps = fps

    data_end = (max(times) if times else (n - 1) / fps) + 1.0 / fps
    duration = declared if declared else data_end
    src.duration_s = duration
    slack = src.slack_s()
    if reached_end and data_end < duration - slack:
        raise MediaError(
            path, f"truncated or corrupt: data ends at {_secs(data_end)} of {_secs(duration)}"
        )
    # AVI files cut short lose their index and report only what is there; the header's frame
    # count still tells how long the video was meant to be.
    is_avi = "avi" in src.container.format.name.split(",")
    if is_avi and stream.frames and nominal and stream.frames / nominal > duration + slack:
        raise MediaError(
            path,
            f"truncated or corrupt: the header declares {_secs(stream.frames / nominal)} "
            f"of video but the data ends at {_secs(data_end if reached_end else duration)}",
        )

    keys.sort()
    kf_interval = (keys[-1] - keys[0]) / (len(keys) - 1) if len(keys) >= 2 else None
    step = max(1.0, kf_interval or 1.0)
    seekable = bool(times) and _seek_works(src, keys, min(duration, max(times)), step)
    if not reached_end and seekable:
        _check_tail(src, step)

    frame_count = n if reached_end else (stream.frames or None)
    cc = stream.codec_context
    return MediaInfo(
        path=path,
        duration_s=duration,
        fps=fps,
        width=cc.width or stream.width,
        height=cc.height or stream.height,
        codec=cc.name,
        frame_count=frame_count,
        keyframe_interval_s=kf_interval,
        seekable=seekable,
    )


def _declared_duration(src: _Source) -> tuple[float | None, bool]:
    """Seconds of video the file announces (None if it does not), and whether that figure is
    only the container's (spanning all streams) rather than the video stream's own."""
    stream, container = src.stream, src.container
    if stream.duration:
        return float(stream.duration * src.time_base), False
    if container.duration:
        # The container's span covers all streams; video may start after the audio does.
        offset = 0.0
        if container.start_time is not None and stream.start_time is not None:
            offset = float(stream.start_time * src.time_base) - container.start_time / av.time_base
        return container.duration / av.time_base - max(0.0, offset), True
    return None, False


def _seek_works(src: _Source, keys: list[float], scanned_end: float, step: float) -> bool:
    """One seek just after a key frame we know of: does it land on a key frame before it?"""
    target = keys[-1] if len(keys) >= 2 else scanned_end / 2.0
    target += 0.5 / src.fps
    try:
        landed = next(src.seek_to_key(target, step), None)
    except _SeekFailed as e:
        log.info("%s: not seekable (%s)", src.path, e)
        return False
    return landed is not None


def _check_tail(src: _Source, step: float) -> None:
    """Raise MediaError when the last seconds of a long file's packets are missing."""
    assert src.duration_s is not None
    slack = src.slack_s()
    target = max(0.0, src.duration_s - slack - max(step, 5.0))
    try:
        packets = src.seek_to_key(target, step)
    except _SeekFailed:
        return  # sampling will notice if the end is missing
    last = None
    for pkt in packets:
        t = src.packet_time(pkt)
        last = t if t is not None and (last is None or t > last) else last
    end = (last if last is not None else target) + 1.0 / src.fps
    if end < src.duration_s - slack:
        raise MediaError(
            src.path,
            f"truncated or corrupt: data ends at {_secs(end)} of {_secs(src.duration_s)}",
        )


# --------------------------------------------------------------------------------------------
# Moving through frames


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


# --------------------------------------------------------------------------------------------
# Public sampling API


def _to_rgb(frame: VideoFrame, max_side: int | None) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    h, w = image.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def _range(info: MediaInfo, start_s: float, end_s: float | None) -> tuple[float, float]:
    """Clip a requested range to the file; a range that starts past the end is an error."""
    if start_s >= info.duration_s:
        raise MediaError(
            info.path,
            f"requested range starts at {_secs(start_s)} but the video is only "
            f"{_secs(info.duration_s)} long",
        )
    end = info.duration_s if end_s is None else min(end_s, info.duration_s)
    return start_s, end


def _check_args(
    mode: str,
    every_s: float,
    start_s: float,
    end_s: float | None,
    frames_per_shot: int,
    threshold: float,
    min_shot_s: float,
    max_side: int | None,
) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not every_s > 0:
        raise ValueError(f"every_s must be > 0 seconds, not {every_s}")
    if not start_s >= 0:
        raise ValueError(f"start_s must be >= 0 seconds, not {start_s}")
    if end_s is not None and not end_s > start_s:
        raise ValueError(f"end_s ({end_s}) must be after start_s ({start_s})")
    if frames_per_shot < 1:
        raise ValueError(f"frames_per_shot must be >= 1, not {frames_per_shot}")
    if not threshold > 0:
        raise ValueError(f"shot_threshold must be > 0, not {threshold}")
    if not min_shot_s >= 0:
        raise ValueError(f"min_shot_s must be >= 0 seconds, not {min_shot_s}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1 pixel, not {max_side}")


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
    path = Path(path)
    if mode == "interval":
        return _sample_interval(path, every_s, start_s, end_s, max_side)
    if mode == "keyframes":
        return _sample_keyframes(path, every_s, start_s, end_s, max_side)
    return _sample_shots(
        path, start_s, end_s, frames_per_shot, shot_threshold, min_shot_s, max_side
    )


def _sample_times(start: float, end: float, every_s: float) -> Iterator[float]:
    # k * every_s, not a running sum: no drift over a 2-hour file
    for k in itertools.count():
        t = start + k * every_s
        if t >= end - _EPS:
            return
        yield t


def _sample_interval(
    path: Path, every_s: float, start_s: float, end_s: float | None, max_side: int | None
) -> Generator[Frame, None, None]:
    info = probe(path)
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
    path: Path, every_s: float, start_s: float, end_s: float | None, max_side: int | None
) -> Generator[Frame, None, None]:
    """Key frames only: packets are demuxed (cheap) to find them, and only they are decoded.

    For each time t we need the last key frame <= t and the first one after t. After a seek
    (when the gap is large) or by demuxing on from where we are, we walk key packets forward;
    both ways see the same key frames, so seekable and unseekable files give the same picks.
    """
    info = probe(path)
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
    info = probe(path)
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
