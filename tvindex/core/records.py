"""The records the indexer writes and the store returns: the data of the catalogue.

These are plain data, shared by every store backend; nothing here knows SQL or Elasticsearch.
Vectors are float32 numpy arrays indexed like their label set's labels.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tvindex.core.timecode import EpisodeClock

Level = Literal["shot", "episode", "programme"]
LEVELS: tuple[Level, ...] = ("shot", "episode", "programme")
EpisodeStatus = Literal["pending", "indexed", "failed"]


@dataclass(frozen=True)
class ProgrammeRecord:
    id: str
    title: str
    description: str = ""
    genre: str = ""


@dataclass(frozen=True)
class EpisodeRecord:
    """An episode: a whole media file, or the time range [start_s, end_s) of one."""

    id: str
    programme_id: str
    title: str
    media_path: str
    air_date: dt.date | None = None
    description: str = ""
    start_s: float | None = None
    end_s: float | None = None
    # Subtitle files the manifest names for it (absolute paths), and the programme's spoken
    # language (ISO 639-1, e.g. "ca"; None: unknown), both read by the word sources.
    subtitles: tuple[str, ...] = ()
    language: str | None = None


@dataclass
class LabelStats:
    """Late-fusion statistics of one label set over a group of frames.

    ``score``: mean probability per label over the frames [n]; ``coverage``: share of the
    frames whose probability reaches the label set's threshold [n]; ``n_frames``: how many.
    """

    score: np.ndarray
    coverage: np.ndarray
    n_frames: int


@dataclass
class SegmentTags:
    """A shot (``shots`` sampling) or a sampled frame's span (other modes)."""

    index: int
    start_s: float
    end_s: float
    time_s: float  # the representative frame's time (thumbnail, player start)
    stats: dict[str, LabelStats]  # label set name -> stats over this segment's frames
    thumbnail: bytes = b""  # JPEG
    # Mean of the segment's frames' unit-length embeddings [D] float32 (not renormalised, so
    # groups combine exactly by frame-weighted means); None when no tagger embeds.
    embedding: np.ndarray | None = None
    # The same mean of the frames' unit CLIP image embeddings (the openclip tagger: its own
    # space, for visual: query terms); None without that tagger. Kept beside the store
    # (search.visual_vectors), not in it.
    visual: np.ndarray | None = None


@dataclass
class EpisodeTags:
    """Everything one indexing run of one episode produced; written in one transaction."""

    episode_id: str
    fingerprint: str  # content fingerprint of the media (and range)
    config_version: str  # taggers, sampling and aggregation that produced it
    duration_s: float
    segments: list[SegmentTags]
    stats: dict[str, LabelStats]  # episode level, over all frames
    sampling: str = ""
    # Mean of all the episode's frames' unit-length embeddings [D] (see SegmentTags), and the
    # identity of the tagger that made them (``Tagger.identity()``); None/"" without one.
    embedding: np.ndarray | None = None
    embedding_model: str = ""
    # Its broadcast clock (frame rate, start timecode; tvindex.core.timecode); None: unknown.
    clock: EpisodeClock | None = None
    # The openclip tagger's output (see SegmentTags.visual): the mean over all the episode's
    # frames, the tagger's identity and how many frames it embedded; None/""/0 without it.
    visual_embedding: np.ndarray | None = None
    visual_model: str = ""
    visual_frames: int = 0


@dataclass(frozen=True)
class EpisodeState:
    id: str
    programme_id: str
    title: str
    status: EpisodeStatus
    fingerprint: str | None
    config_version: str | None
    error: str | None
    indexed_at: str | None
    n_segments: int | None
    n_frames: int | None


@dataclass(frozen=True)
class LabelInfo:
    label_id: int
    label_set: str
    activation: str
    name: str
    shots: int = 0  # segments where some frame reached the coverage threshold
    episodes: int = 0


@dataclass(frozen=True)
class Evidence:
    label_set: str
    label: str
    score: float
    coverage: float | None = None
    excluded: bool = False
    term: str = ""  # the query term it answers, as query text (e.g. "object:dog")
    soft: bool = False  # a ~term (prefer without): it lowered the score, excluded nothing


@dataclass
class Hit:
    """One search result with the evidence that ranked it."""

    level: Level
    id: str  # shot ids are "EPISODE@INDEX"
    score: float
    programme_id: str
    programme_title: str
    episode_id: str | None = None
    episode_title: str | None = None
    air_date: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    time_s: float | None = None
    evidence: list[Evidence] = field(default_factory=list)
    # What word terms matched (search/words.py ``word_evidence``): field, term, source,
    # start_s, end_s, language, snippet (HTML, <mark>ed), score. Empty without word terms.
    words: list[dict[str, Any]] = field(default_factory=list)
    # Episode and programme hits: the best shot for the same query
    # ({"id", "start_s", "end_s", "time_s", "score"}), None when no shot matches on its own.
    best_shot: dict[str, Any] | None = None
    # A temporal query's hit (A then B): moment B ({"id", "start_s", "end_s", "time_s",
    # "score", "evidence"}); the hit itself is moment A.
    then: dict[str, Any] | None = None
    # SMPTE timecodes of start_s/end_s/time_s in the episode's clock (tvindex.core.timecode;
    # search.timecodes fills them); None when the episode's clock is unknown.
    start_tc: str | None = None
    end_tc: str | None = None
    time_tc: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("evidence", "words")}
        d["evidence"] = [e.__dict__ for e in self.evidence]
        if self.words:
            d["words"] = [dict(w) for w in self.words]
        return d


@dataclass
class SearchPage:
    hits: list[Hit]
    total: int
    offset: int
    limit: int
    level: Level
    query: dict[str, Any] = field(default_factory=dict)
    next_cursor: str | None = None  # opaque; the next page of a cursor walk (search.cursor)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "total": self.total, "offset": self.offset,
                "limit": self.limit, "query": self.query, "hits": [h.to_dict() for h in self.hits],
                "next_cursor": self.next_cursor}


# --- read models: what readers get back (the JSON API serves their ``to_dict()``) -------------
@dataclass(frozen=True)
class TopLabel:
    """One of an episode's or programme's kept labels, by score: mean probability over the
    frames and the share of frames that reached the threshold, rounded to 4 places."""

    label: str
    score: float
    coverage: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "coverage": self.coverage}


@dataclass(frozen=True)
class ShotLabel:
    """One of a segment's five best labels of a set (score rounded to 4 places)."""

    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score}


def _labels_dict(top: dict[str, tuple[Any, ...]]) -> dict[str, list[dict[str, Any]]]:
    return {name: [x.to_dict() for x in items] for name, items in top.items()}


@dataclass(frozen=True)
class ProgrammeSummary:
    """A programme in the catalogue's list: metadata, how many of its episodes are known and
    indexed, and the range of their air dates (ISO dates, None without any)."""

    id: str
    title: str
    description: str
    genre: str
    episodes: int
    indexed_episodes: int
    first_air_date: str | None
    last_air_date: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "description": self.description,
                "genre": self.genre, "episodes": self.episodes,
                "indexed_episodes": self.indexed_episodes,
                "first_air_date": self.first_air_date, "last_air_date": self.last_air_date}


@dataclass(frozen=True)
class EpisodeSummary:
    """An episode in its programme's list (``segments``: how many shots/frames it has)."""

    id: str
    title: str
    air_date: str | None
    status: str
    segments: int | None
    duration_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "air_date": self.air_date,
                "status": self.status, "segments": self.segments,
                "duration_s": self.duration_s}


@dataclass(frozen=True)
class ProgrammeDetail:
    """A programme: metadata, its episodes (by air date, then id) and its top labels per
    label set (at most 10 each)."""

    id: str
    title: str
    description: str
    genre: str
    episodes: tuple[EpisodeSummary, ...]
    top_labels: dict[str, tuple[TopLabel, ...]]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "description": self.description,
                "genre": self.genre, "episodes": [e.to_dict() for e in self.episodes],
                "top_labels": _labels_dict(self.top_labels)}


@dataclass(frozen=True)
class EpisodeDetail:
    """An episode: metadata, indexing state, its programme and its top labels per set."""

    id: str
    title: str
    air_date: str | None
    description: str
    media_path: str
    start_s: float | None
    end_s: float | None
    status: str
    error: str | None
    duration_s: float | None
    n_frames: int | None
    n_segments: int | None
    sampling: str | None
    programme_id: str
    programme_title: str | None
    reindex_requested: bool
    top_labels: dict[str, tuple[TopLabel, ...]]
    clock: EpisodeClock | None = None  # None: indexed before timecodes were kept

    def timecodes(self) -> dict[str, Any]:
        """``frame_rate`` ("30000/1001"), ``start_tc``, ``end_tc``, ``drop_frame``, ``vfr``
        (all None without a clock)."""
        c = self.clock
        if c is None:
            return dict.fromkeys(("frame_rate", "start_tc", "end_tc", "drop_frame", "vfr"))
        end = c.origin_s + (self.duration_s or 0.0)
        return {**c.to_dict(), "end_tc": c.timecode(end)}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "air_date": self.air_date,
                "description": self.description, "media_path": self.media_path,
                "start_s": self.start_s, "end_s": self.end_s, "status": self.status,
                "error": self.error, "duration_s": self.duration_s,
                "n_frames": self.n_frames, "n_segments": self.n_segments,
                "sampling": self.sampling, "programme_id": self.programme_id,
                "programme_title": self.programme_title,
                "reindex_requested": self.reindex_requested,
                "top_labels": _labels_dict(self.top_labels), **self.timecodes()}


@dataclass(frozen=True)
class SegmentView:
    """A shot/frame of an episode as readers see it: times and its best labels per set."""

    id: str  # "EPISODE@INDEX"
    index: int
    start_s: float
    end_s: float
    time_s: float
    n_frames: int
    top_labels: dict[str, tuple[ShotLabel, ...]]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "index": self.index, "start_s": self.start_s,
                "end_s": self.end_s, "time_s": self.time_s, "n_frames": self.n_frames,
                "top_labels": _labels_dict(self.top_labels)}


def shot_id(episode_id: str, index: int) -> str:
    return f"{episode_id}@{index}"


def parse_shot_id(text: str) -> tuple[str, int]:
    episode, sep, index = text.rpartition("@")
    if not sep or not episode or not index.isdigit():
        raise ValueError(f"not a shot id: {text!r} (expected EPISODE@INDEX)")
    return episode, int(index)
