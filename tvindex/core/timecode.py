"""Broadcast timecode: rational frame rates and SMPTE ``HH:MM:SS:FF`` labels.

A frame rate is a :class:`fractions.Fraction` (29.97 is ``30000/1001``). A timecode counts
frames at the *nominal* rate (the rate rounded: 30 for 29.97, 24 for 23.976), so it drifts
from the wall clock unless it is drop-frame: at 29.97 and 59.94 drop-frame timecode skips the
frame *numbers* 0 and 1 (0 to 3 at 59.94) at the start of every minute except each tenth one,
which keeps it within a few frames of the clock. Drop-frame labels separate the frames with
``;`` (``00:01:00;02``), non-drop ones with ``:``. Counting always wraps at 24 hours.

:class:`Timebase` is an episode's clock: its rate, whether it is drop-frame, and the timecode
its first frame carries (``start_frames``, a frame count; 0 for ``00:00:00:00``). It turns
episode-relative seconds into frames and timecode labels and back.

Pure arithmetic on the standard library: every layer may use it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache

__all__ = [
    "DROP_FRAME_RATES",
    "EpisodeClock",
    "Timebase",
    "TimecodeError",
    "drop_frame_default",
    "format_rate",
    "frames_to_seconds",
    "frames_to_timecode",
    "nominal_fps",
    "parse_rate",
    "parse_timecode",
    "seconds_to_frames",
    "timecode_to_frames",
]

# The rates whose timecode may be drop-frame, and how many frame numbers each minute drops.
DROP_FRAME_RATES: dict[Fraction, int] = {
    Fraction(30000, 1001): 2,
    Fraction(60000, 1001): 4,
}
# NTSC-family rates a float such as 29.97 or 23.976 stands for.
_NTSC = tuple(Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120))

_TC = re.compile(r"^\s*(\d{1,2})[:;.](\d{2})[:;.](\d{2})([:;.,])(\d{2,3})\s*$")

# Times are kept to the millisecond (the indexer rounds them), so a frame's start time may
# read up to half a millisecond early: a time that close before a frame's start is that frame.
# (Plus a hair for binary floating point: 1.2 * 25 = 29.999999999999996.)
_ROUNDING_S = Fraction(1, 2000)
_EPS_FRAMES = Fraction(1, 10**6)


class TimecodeError(ValueError):
    """A rate or a timecode label that cannot be used."""


def parse_rate(value: Fraction | float | str) -> Fraction:
    """A frame rate as an exact fraction.

    Accepts a Fraction, an int, ``"30000/1001"``, ``"25"``, or a float/decimal string; a value
    within 0.005 of an NTSC rate (23.976, 29.97, 47.952, 59.94, 119.88) snaps to it, and other
    decimals to the nearest fraction with a denominator up to 1001.
    """
    if isinstance(value, Fraction):
        rate = value
    elif isinstance(value, bool):
        raise TimecodeError(f"not a frame rate: {value!r}")
    elif isinstance(value, int):
        rate = Fraction(value)
    elif isinstance(value, (float, str)):
        text = str(value).strip()
        try:
            if "/" in text:
                num, _, den = text.partition("/")
                rate = Fraction(int(num), int(den))
            else:
                rate = _snap(float(text))
        except (ValueError, ZeroDivisionError) as e:
            raise TimecodeError(f"not a frame rate: {value!r}") from e
    else:
        raise TimecodeError(f"not a frame rate: {value!r}")
    if not (rate > 0) or rate > 1000:
        raise TimecodeError(f"frame rate out of range: {value!r}")
    return rate


def _snap(x: float) -> Fraction:
    if not math.isfinite(x) or x <= 0:
        raise ValueError(x)
    for ntsc in _NTSC:
        if abs(x - float(ntsc)) < 0.005:
            return ntsc
    if abs(x - round(x)) < 1e-6:
        return Fraction(round(x))
    return Fraction(x).limit_denominator(1001)


def format_rate(rate: Fraction) -> str:
    """``"25"`` or ``"30000/1001"``: the rate as text that :func:`parse_rate` reads back."""
    rate = Fraction(rate)
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def nominal_fps(rate: Fraction) -> int:
    """The frames per timecode second: the rate rounded (30 for 29.97, 24 for 23.976)."""
    return max(1, round(Fraction(rate)))


def drop_frame_default(rate: Fraction) -> bool:
    """Whether timecode at this rate is drop-frame by default (29.97 and 59.94 are)."""
    return Fraction(rate) in DROP_FRAME_RATES


def _check_drop(rate: Fraction, drop_frame: bool | None) -> bool:
    if drop_frame is None:
        return drop_frame_default(rate)
    if drop_frame and Fraction(rate) not in DROP_FRAME_RATES:
        raise TimecodeError(
            f"drop-frame timecode needs 29.97 or 59.94 fps, not {format_rate(rate)}"
        )
    return bool(drop_frame)


def _day_frames(fps: int, drop: int) -> int:
    # 24 h of timecode labels: 1440 minutes, 144 of them (each tenth) keep all their numbers.
    return 24 * 3600 * fps - drop * (1440 - 144)


@lru_cache(maxsize=64)
def _counting(num: int, den: int, drop_frame: bool | None) -> tuple[int, int, int, bool]:
    """``(nominal fps, numbers dropped a minute, frames in 24 h, drop-frame)`` of a rate."""
    rate = Fraction(num, den)
    df = _check_drop(rate, drop_frame)
    fps = nominal_fps(rate)
    drop = DROP_FRAME_RATES[rate] if df else 0
    return fps, drop, _day_frames(fps, drop), df


def frames_to_timecode(frames: int, rate: Fraction, drop_frame: bool | None = None) -> str:
    """The SMPTE label of a frame count (0 is ``00:00:00:00``), wrapping at 24 hours.

    ``drop_frame`` None means the rate's default (:func:`drop_frame_default`).
    """
    rate = rate if isinstance(rate, Fraction) else Fraction(rate)
    fps, drop, day, df = _counting(rate.numerator, rate.denominator, drop_frame)
    n = int(frames) % day
    if drop:
        per_min = fps * 60 - drop  # a minute that drops numbers
        per_10min = per_min * 10 + drop  # nine such minutes and one that keeps all
        tens, rem = divmod(n, per_10min)
        n += drop * 9 * tens
        if rem >= drop:
            n += drop * ((rem - drop) // per_min)
    ff = n % fps
    secs = n // fps
    sep = ";" if df else ":"
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}{sep}{ff:02d}"


def parse_timecode(text: str) -> tuple[int, int, int, int, bool | None]:
    """``(hours, minutes, seconds, frames, drop)`` of a label; ``drop`` is True for a ``;``
    (or ``,``) before the frames, False for ``:``, None for ``.`` (no say)."""
    m = _TC.match(text)
    if not m:
        raise TimecodeError(f"not a timecode: {text!r} (expected HH:MM:SS:FF or HH:MM:SS;FF)")
    h, mi, s, sep, f = int(m[1]), int(m[2]), int(m[3]), m[4], int(m[5])
    drop = True if sep in ";," else (False if sep == ":" else None)
    return h, mi, s, f, drop


def timecode_to_frames(text: str, rate: Fraction, drop_frame: bool | None = None) -> int:
    """The frame count of a label (the inverse of :func:`frames_to_timecode`).

    ``drop_frame`` None: the label's separator says (``;`` drop-frame, ``:`` non-drop), and a
    label with neither follows the rate's default. Raises TimecodeError for a label that does
    not exist (frames past the nominal rate, minutes or seconds past 59, hours past 23, or a
    number drop-frame skips such as ``00:01:00;00``).
    """
    rate = Fraction(rate)
    h, mi, s, f, said = parse_timecode(text)
    df = _check_drop(rate, drop_frame if drop_frame is not None else said)
    fps = nominal_fps(rate)
    if h > 23 or mi > 59 or s > 59 or f >= fps:
        raise TimecodeError(f"no such timecode at {format_rate(rate)} fps: {text!r}")
    drop = DROP_FRAME_RATES[rate] if df else 0
    if drop and s == 0 and f < drop and mi % 10:
        raise TimecodeError(f"drop-frame timecode skips {text!r}")
    minutes = h * 60 + mi
    return ((minutes * 60 + s) * fps + f) - drop * (minutes - minutes // 10)


def seconds_to_frames(seconds: float | Fraction, rate: Fraction) -> int:
    """The number of the frame showing at ``seconds``: the frame started at or before it,
    or starting within half a millisecond after it (times are kept to the millisecond)."""
    rate = Fraction(rate)
    if isinstance(seconds, (int, float)):
        # float arithmetic: its error (1e-16 relative, under 1e-9 frames for a day) stays far
        # inside the 1e-6 frame tolerance, at a tenth of the cost of exact fractions
        return math.floor((seconds + 0.0005) * rate.numerator / rate.denominator + 1e-6)
    return math.floor((Fraction(seconds) + _ROUNDING_S) * rate + _EPS_FRAMES)


def frames_to_seconds(frames: int, rate: Fraction) -> float:
    """The time in seconds at which frame ``frames`` starts."""
    return float(Fraction(int(frames)) / Fraction(rate))


@dataclass(frozen=True)
class Timebase:
    """An episode's clock.

    ``rate``: frames per second (exact). ``drop_frame``: whether its labels are drop-frame.
    ``start_frames``: the timecode of the episode's first frame as a frame count (0 for
    ``00:00:00:00``). Times given to it are seconds from the episode's start.
    """

    rate: Fraction
    drop_frame: bool = False
    start_frames: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", parse_rate(self.rate))
        _check_drop(self.rate, self.drop_frame)
        if self.start_frames < 0:
            raise TimecodeError(f"start timecode before 00:00:00:00: {self.start_frames}")

    @classmethod
    def of(
        cls,
        rate: Fraction | float | str,
        start_tc: str | None = None,
        drop_frame: bool | None = None,
    ) -> Timebase:
        """A clock at ``rate`` starting at the label ``start_tc`` (None: 00:00:00:00).

        ``drop_frame`` None: the start label's separator says, else the rate's default.
        """
        r = parse_rate(rate)
        said = parse_timecode(start_tc)[4] if start_tc else None
        df = _check_drop(r, drop_frame if drop_frame is not None else said)
        start = timecode_to_frames(start_tc, r, df) if start_tc else 0
        return cls(r, df, start)

    @property
    def fps(self) -> int:
        return nominal_fps(self.rate)

    @property
    def start_tc(self) -> str:
        return frames_to_timecode(self.start_frames, self.rate, self.drop_frame)

    def frames(self, seconds: float | Fraction) -> int:
        """Frames from the episode's start to the frame showing at ``seconds``."""
        return seconds_to_frames(seconds, self.rate)

    def seconds(self, frames: int) -> float:
        return frames_to_seconds(frames, self.rate)

    def label(self, frames: int) -> str:
        """The timecode of the frame ``frames`` after the episode's first."""
        return frames_to_timecode(self.start_frames + int(frames), self.rate, self.drop_frame)

    def timecode(self, seconds: float | Fraction) -> str:
        """The timecode of the frame showing ``seconds`` after the episode's start."""
        return self.label(self.frames(seconds))

    def offset(self, seconds: float | Fraction) -> Timebase:
        """This clock moved to start ``seconds`` later (an episode that begins inside a file
        whose first frame carries this clock's start timecode)."""
        return Timebase(self.rate, self.drop_frame, self.start_frames + self.frames(seconds))

    def parse(self, text: str) -> int:
        """Frames from the episode's start to the label ``text``; a label below the start
        timecode counts as past midnight (timecode wraps at 24 hours)."""
        day = _day_frames(self.fps, DROP_FRAME_RATES[self.rate] if self.drop_frame else 0)
        return (timecode_to_frames(text, self.rate, self.drop_frame) - self.start_frames) % day


@dataclass(frozen=True)
class EpisodeClock:
    """An episode's clock as the store keeps it: what every time it shows is labelled with.

    ``frame_rate``: the file's nominal rate (exact). ``start_tc``: the timecode of the
    episode's first frame (the file's ``timecode`` tag advanced by the episode's start inside
    the file; ``00:00:00:00`` when the file has none). ``drop_frame``: its labels are
    drop-frame. ``vfr``: the file's frame rate varies, so its timecodes are nominal.
    ``origin_s``: the episode's start in its file, in seconds (the times the store keeps are
    seconds of the file; timecodes are the episode's).
    """

    frame_rate: Fraction
    start_tc: str = "00:00:00:00"
    drop_frame: bool = False
    vfr: bool = False
    origin_s: float = 0.0

    @classmethod
    def for_episode(
        cls,
        frame_rate: Fraction | float | str,
        file_tc: str | None = None,
        start_s: float | None = None,
        vfr: bool = False,
    ) -> EpisodeClock:
        """The clock of an episode starting ``start_s`` seconds into a file whose first frame
        carries the timecode ``file_tc`` (None or not a valid label at this rate: the episode
        starts at 00:00:00:00)."""
        rate = parse_rate(frame_rate)
        tb = None
        if file_tc:
            try:
                tb = Timebase.of(rate, file_tc).offset(start_s or 0.0)
            except TimecodeError:
                tb = None
        if tb is None:
            tb = Timebase(rate, drop_frame_default(rate), 0)
        return cls(rate, tb.start_tc, tb.drop_frame, bool(vfr), float(start_s or 0.0))

    @classmethod
    def stored(
        cls,
        frame_rate: str | None,
        start_tc: str | None,
        drop_frame: bool,
        vfr: bool,
        origin_s: float | None,
    ) -> EpisodeClock | None:
        """A clock from a store's columns; None when the episode has none (indexed before
        timecodes were kept) or the values do not make one."""
        if not frame_rate:
            return None
        try:
            rate = parse_rate(frame_rate)
            tb = Timebase.of(rate, start_tc or None, bool(drop_frame))
        except TimecodeError:
            return None
        return cls(rate, tb.start_tc, tb.drop_frame, bool(vfr), float(origin_s or 0.0))

    @cached_property
    def timebase(self) -> Timebase:
        return Timebase.of(self.frame_rate, self.start_tc, self.drop_frame)

    @cached_property
    def _origin_frames(self) -> int:
        return seconds_to_frames(self.origin_s, self.frame_rate)

    def frames(self, file_s: float) -> int:
        """Frames from the episode's first frame to the one showing at ``file_s`` (seconds of
        the file), counted on the file's frame grid; never negative."""
        return max(0, seconds_to_frames(file_s, self.frame_rate) - self._origin_frames)

    def timecode(self, file_s: float) -> str:
        """The timecode of the frame showing at ``file_s`` (seconds of the file)."""
        return self.timebase.label(self.frames(file_s))

    def to_dict(self) -> dict[str, object]:
        return {
            "frame_rate": format_rate(self.frame_rate),
            "start_tc": self.start_tc,
            "drop_frame": self.drop_frame,
            "vfr": self.vfr,
        }

    def annotate(
        self, item: dict[str, object], keys: tuple[str, ...] = ("start_s", "end_s", "time_s")
    ) -> dict[str, object]:
        """Add ``<name>_tc`` beside each ``<name>_s`` of ``item`` that holds a number (in
        place; returned for chaining)."""
        for key in keys:
            value = item.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                item[key[:-2] + "_tc"] = self.timecode(float(value))
        return item
