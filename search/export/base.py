"""What every export format reads: a list of clips, each a shot of an episode with its times
in seconds of the file, its frames and timecodes in the episode's clock, its media and its
evidence; and the :class:`Exporter` interface."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

from tvindex.core.timecode import EpisodeClock, format_rate

# Episodes indexed before timecodes were kept have no clock: they export at this nominal rate
# from 00:00:00:00 (re-index them to get their own).
FALLBACK_RATE = Fraction(25)


class ExportError(ValueError):
    """An export that cannot be made (unknown format, nothing to export, bad argument)."""


@dataclass(frozen=True)
class Clip:
    """One exported shot.

    ``start_s``/``end_s``/``time_s``: seconds of the media file, as everywhere else.
    ``media``: the file's path (command line) or URL (API). ``clock``: the episode's clock;
    ``episode_duration_s``: how long the episode is (the media's available range).
    """

    shot_id: str
    episode_id: str
    episode_title: str
    programme_id: str
    programme_title: str
    media: str
    start_s: float
    end_s: float
    time_s: float
    clock: EpisodeClock
    episode_duration_s: float
    score: float | None = None
    labels: tuple[str, ...] = ()  # "set:label" of the evidence (search) or top labels

    # -- frames and timecodes in the episode's clock (source in/out; out is exclusive) ---
    @property
    def rate(self) -> Fraction:
        return self.clock.frame_rate

    @property
    def in_frame(self) -> int:
        """Frames from the episode's first frame to the clip's first."""
        return self.clock.frames(self.start_s)

    @property
    def out_frame(self) -> int:
        """Frames from the episode's first frame to the one after the clip (at least one
        frame after ``in_frame``)."""
        return max(self.in_frame + 1, self.clock.frames(self.end_s))

    @property
    def duration_frames(self) -> int:
        return self.out_frame - self.in_frame

    @property
    def episode_frames(self) -> int:
        """The episode's length in frames (at least up to this clip's end)."""
        end = self.clock.frames(self.clock.origin_s + self.episode_duration_s)
        return max(end, self.out_frame)

    @property
    def tc_in(self) -> str:
        return self.clock.timebase.label(self.in_frame)

    @property
    def tc_out(self) -> str:
        return self.clock.timebase.label(self.out_frame)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shot_id": self.shot_id, "episode_id": self.episode_id,
            "episode_title": self.episode_title, "programme_id": self.programme_id,
            "programme_title": self.programme_title, "media": self.media,
            "frame_rate": format_rate(self.rate), "drop_frame": self.clock.drop_frame,
            "vfr": self.clock.vfr, "episode_start_tc": self.clock.start_tc,
            "tc_in": self.tc_in, "tc_out": self.tc_out,
            "frame_in": self.in_frame, "frame_out": self.out_frame,
            "duration_frames": self.duration_frames,
            "start_s": self.start_s, "end_s": self.end_s, "time_s": self.time_s,
            "score": self.score, "labels": list(self.labels),
        }


@dataclass
class ClipList:
    """What is exported: ``kind`` "search" (``query`` the query text) or "episode"
    (``episode_id``), a title for the timeline, and the clips in order."""

    kind: str
    title: str
    clips: list[Clip]
    query: str | None = None
    episode_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Exporter(ABC):
    """One file format. ``media_type`` and ``extension`` name what :meth:`render` makes."""

    name: ClassVar[str] = ""
    media_type: ClassVar[str] = "application/octet-stream"
    extension: ClassVar[str] = ""

    @abstractmethod
    def render(self, clips: ClipList) -> bytes:
        """The file's bytes."""

    def filename(self, clips: ClipList) -> str:
        """A safe download name: ``tvindex-<episode or query>.<extension>``."""
        stem = clips.episode_id if clips.kind == "episode" else f"search-{clips.query or ''}"
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem or "export").strip("-.")[:60] or "export"
        return f"tvindex-{slug}.{self.extension}"
