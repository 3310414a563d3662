"""Probing: what a video file holds (duration, frame rate, key-frame spacing, whether seeking
works), and whether its data is all there."""

from __future__ import annotations

import itertools
import logging
import os
from fractions import Fraction
from pathlib import Path

import av

from indexer.media.source import _nominal_fps, _secs, _SeekFailed, _Source
from indexer.media.types import MediaError, MediaInfo
from tvindex.core.timecode import TimecodeError, parse_rate, parse_timecode

log = logging.getLogger(__name__)

# probe demuxes (never decodes) this much video to measure the key-frame spacing and frame rate;
# 2 minutes of packets is a fraction of a second of I/O even for HD broadcast files.
_SCAN_CAP_S = 120.0


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
        frame_rate=_exact_rate(nominal or fps),
        timecode=_timecode_tag(src),
        vfr=_varies(times, fps),
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


# -- broadcast timecode (tvindex.core.timecode) ------------------------------------------------
def _exact_rate(fps: float) -> Fraction | None:
    """The nominal rate as an exact fraction (29.97 -> 30000/1001)."""
    try:
        return parse_rate(float(fps))
    except TimecodeError:
        return None


def _timecode_tag(src: _Source) -> str | None:
    """The ``timecode`` tag of the video stream, else of a data (tmcd) stream, else of the
    container (Matroska keeps it there as ``TIMECODE``); None when absent or not a label."""
    sources = [src.stream.metadata]
    sources += [s.metadata for s in src.container.streams if s.type == "data"]
    sources.append(src.container.metadata)
    for meta in sources:
        for key, value in meta.items():
            if key.lower() == "timecode":
                try:
                    parse_timecode(value)
                except TimecodeError:
                    continue
                return value.strip()
    return None


def _varies(times: list[float], fps: float) -> bool:
    """Whether the frame intervals vary (a variable-frame-rate file): more than 2% of the
    scanned intervals differ from the median by over a quarter of it (timestamp rounding in
    millisecond time bases stays well inside that)."""
    if len(times) < 3:
        return False
    ordered = sorted(times)
    gaps = sorted(b - a for a, b in itertools.pairwise(ordered) if b > a)
    if not gaps:
        return False
    median = gaps[len(gaps) // 2]
    odd = sum(1 for g in gaps if abs(g - median) > 0.25 * median)
    return odd > max(1, 0.02 * len(gaps)) or abs(median * fps - 1.0) > 0.25
