"""An episode's timeline: its shots in time order and, for the episode's top labels, how
strongly each shot carries them (the data behind the player's label strip).

Times are seconds of the media file, as the store keeps them: an episode that is the range
[start_s, end_s) of a file has shots inside that range.
"""

from __future__ import annotations

import math
from typing import Any

from tvindex.core.records import EpisodeDetail, SegmentView
from tvindex.core.store import CatalogueStore

TRACKS_PER_SET = 4


def episode_span(episode: EpisodeDetail, segments: list[SegmentView]) -> tuple[float, float]:
    """(start, end) of the episode in seconds of its file."""
    start = float(episode.start_s or 0.0)
    if episode.end_s is not None:
        end = float(episode.end_s)
    elif episode.duration_s:
        end = start + float(episode.duration_s)
    else:
        end = max((s.end_s for s in segments), default=start)
    return start, max(end, start)


def episode_timeline(store: CatalogueStore, episode_id: str,
                     tracks_per_set: int = TRACKS_PER_SET) -> dict[str, Any]:
    """Shots plus label tracks. A track is one of the episode's top labels of a set, with one
    score per shot (aligned with ``segments``); shots keep only their five best labels per
    set, so a score below those reads as 0. ``segments`` are the store's ``SegmentView``s
    (the API serves their ``to_dict()``). Unknown id: ``NotFound``."""
    episode = store.episode(episode_id)
    segments = store.segments(episode_id)
    start, end = episode_span(episode, segments)
    tracks = []
    for label_set, top in episode.top_labels.items():
        for entry in top[:tracks_per_set]:
            scores = []
            for seg in segments:
                found = [x.score for x in seg.top_labels.get(label_set, ())
                         if x.label == entry.label]
                scores.append(round(float(found[0]), 4) if found else 0.0)
            tracks.append({"label_set": label_set, "label": entry.label,
                           "episode_score": entry.score, "scores": scores})
    return {"episode_id": episode_id, "start_s": start, "end_s": end,
            "duration_s": round(end - start, 3), "segments": segments, "tracks": tracks}


def format_time(seconds: float | None) -> str:
    """``m:ss.s`` (``h:mm:ss`` past an hour), for labels next to thumbnails."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = max(0.0, float(seconds))
    if seconds >= 3600:
        h, rest = divmod(int(seconds), 3600)
        m, s = divmod(rest, 60)
        return f"{h}:{m:02d}:{s:02d}"
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"
