"""The word-extractor seam: one source of timed text (subtitles, speech, on-screen text).

An extractor is built from ``(its settings section, RuntimeContext)``. ``version`` names its
model and settings (hashed), so a changed model or setting re-runs only that source;
``episode_version`` may add what else the result depends on (the subtitle files found).
``extract`` returns the episode's :class:`~tvindex.core.words.TextSegment` list, or raises
:class:`WordsError` with the reason, which the words pass records for that source alone.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from tvindex.core.records import EpisodeRecord
from tvindex.core.words import TextSegment


class WordsError(RuntimeError):
    """A word source cannot read an episode (or cannot run at all); the message is the reason
    recorded for the source."""


def settings_hash(section: Any) -> str:
    """A short hash of a settings section (a pydantic model, a dict or None)."""
    data = section.model_dump(mode="json") if hasattr(section, "model_dump") else section
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def episode_range(episode: EpisodeRecord) -> tuple[float, float | None]:
    """The episode's time range in the file: ``(start, end)`` seconds, end None = the end."""
    return float(episode.start_s or 0.0), episode.end_s


def clip_segment(seg: TextSegment, start: float, end: float | None) -> TextSegment | None:
    """``seg`` cut to ``[start, end)``; None when it lies outside the range."""
    if seg.end_s <= start or (end is not None and seg.start_s >= end):
        return None
    lo, hi = max(seg.start_s, start), seg.end_s if end is None else min(seg.end_s, end)
    if lo == seg.start_s and hi == seg.end_s:
        return seg
    words = tuple(w for w in seg.words if w.end_s > lo and w.start_s < hi)
    return TextSegment(lo, hi, seg.source, seg.text, seg.language, seg.confidence, words)


class WordExtractor(ABC):
    """Base class. Subclasses take ``(cfg, ctx)`` and set ``version`` in ``__init__``;
    loading a model may wait for the first ``extract`` (a model that cannot be loaded is then
    the recorded reason for every episode, and the pictures are indexed regardless)."""

    name: ClassVar[str] = ""
    version: str = ""

    def episode_version(self, episode: EpisodeRecord) -> str:
        """What this source's result for ``episode`` depends on besides the media itself."""
        return self.version

    @abstractmethod
    def extract(self, episode: EpisodeRecord) -> list[TextSegment]:
        """The episode's timed text, in time order (seconds of the media file)."""

    def cost(self) -> dict[str, float]:
        """What the source has spent so far (seconds of media, processing seconds, ...)."""
        return {}
