"""Opening video files (sniffing what a file that will not open was meant to be) and
``_Source``, one open video stream with its clock: demuxing, seeking and decoding, with every
failure translated into a :class:`~indexer.media.types.MediaError`."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Self

import av
from av.container import InputContainer
from av.packet import Packet
from av.stream import Disposition
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from indexer.media.types import MediaError, MediaInfo

# Seconds of float slack when comparing a frame time with a requested time.
_EPS = 1e-6
# A seek that lands after its target is retried this many times, each from twice as far back.
_SEEK_TRIES = 7
_ERRORS = (av.error.FFmpegError, OSError)
# Decoder threads per open stream: 0 leaves FFmpeg's choice (frame threads on every core: one
# 1080p H.264 decoder then keeps ~1.6 of 2 cores busy); 1 decodes in the calling thread, for
# one decode process per core (``tvindex index --decode-threads``). Threads never change
# the decoded pictures. Process-wide: decode workers inherit it when forked.
_decode_threads = 0


def set_decode_threads(n: int) -> None:
    """Threads each decoder opened from now on may use in this process (0: FFmpeg's choice)."""
    global _decode_threads
    if n < 0:
        raise ValueError(f"decoder threads must be >= 0, got {n}")
    _decode_threads = n


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
        if _decode_threads:
            self.stream.codec_context.thread_count = _decode_threads
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
