"""Words in an episode: timed text segments from its subtitles, its speech and the text on
screen, the unit the word extractors (``indexer/words/``) produce and the stores keep.

The contract between the indexer and the stores (``CatalogueWriter.write_words``,
``CatalogueWriter.word_versions``, ``CatalogueReader.transcript``) speaks these types only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The word sources, in the order the UI lists them. ``text:`` in a query means any of them.
WORD_SOURCES: tuple[str, ...] = ("subtitles", "speech", "screen")


@dataclass(frozen=True)
class Word:
    """One recognised word with its times (speech only; seconds of the media file)."""

    start_s: float
    end_s: float
    text: str
    confidence: float | None = None


@dataclass(frozen=True)
class TextSegment:
    """One timed piece of text of one source: a subtitle cue, a speech segment, or an
    on-screen line held over consecutive frames. Times are seconds of the media file (the
    same clock as the episode's segments); ``language`` is an ISO 639-1 code or None."""

    start_s: float
    end_s: float
    source: str
    text: str
    language: str | None = None
    confidence: float | None = None
    words: tuple[Word, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
            "source": self.source, "language": self.language, "text": self.text,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
        }
        if self.words:
            out["words"] = [{"start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3),
                             "text": w.text, "confidence": w.confidence} for w in self.words]
        return out


@dataclass
class EpisodeWords:
    """What one word source produced for one episode in one run.

    ``version`` identifies the source's model and settings (a changed model or setting makes
    the next run redo this source only); ``error`` is the reason the source failed for this
    episode (its segments are then empty; the episode's pictures are indexed regardless).
    """

    episode_id: str
    source: str
    version: str
    segments: list[TextSegment] = field(default_factory=list)
    error: str | None = None
