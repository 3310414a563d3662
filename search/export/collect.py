"""The clips to export, read through the store contract and the search engine: a search's
shot-level hits (in rank order) or an episode's shots (in time order)."""

from __future__ import annotations

from collections.abc import Callable

from search.engine import MAX_LIMIT, run_search
from search.export.base import FALLBACK_RATE, Clip, ClipList, ExportError
from tvindex.core.records import EpisodeDetail
from tvindex.core.store import CatalogueReader
from tvindex.core.timecode import EpisodeClock

MAX_CLIPS = 5000  # the most hits one search export holds
MediaRef = Callable[[EpisodeDetail], str]  # an episode -> its media's path or URL


def _path(episode: EpisodeDetail) -> str:
    return episode.media_path


def episode_clock(episode: EpisodeDetail) -> EpisodeClock:
    """The episode's clock; an episode indexed before clocks were kept gets a nominal one
    (``FALLBACK_RATE`` from 00:00:00:00)."""
    if episode.clock is not None:
        return episode.clock
    return EpisodeClock.for_episode(FALLBACK_RATE, None, episode.start_s)


class _Episodes:
    """Episode details read once each."""

    def __init__(self, store: CatalogueReader) -> None:
        self.store = store
        self.seen: dict[str, EpisodeDetail] = {}

    def __call__(self, episode_id: str) -> EpisodeDetail:
        if episode_id not in self.seen:
            self.seen[episode_id] = self.store.episode(episode_id)
        return self.seen[episode_id]


def _clip(ep: EpisodeDetail, media: MediaRef, shot_id: str, start_s: float, end_s: float,
          time_s: float, score: float | None, labels: tuple[str, ...]) -> Clip:
    return Clip(shot_id=shot_id, episode_id=ep.id, episode_title=ep.title,
                programme_id=ep.programme_id, programme_title=ep.programme_title or "",
                media=media(ep), start_s=start_s, end_s=end_s, time_s=time_s,
                clock=episode_clock(ep), episode_duration_s=ep.duration_s or 0.0,
                score=score, labels=labels)


def search_clips(store: CatalogueReader, query: str, *, limit: int = MAX_LIMIT,
                 min_score: float = 0.0, sort: str | None = "score",
                 media: MediaRef = _path) -> ClipList:
    """The first ``limit`` shot-level hits of ``query`` (1 to ``MAX_CLIPS``) in the search's
    order (``sort``, see ``search.engine.run_search``; best first by default)."""
    if not 1 <= limit <= MAX_CLIPS:
        raise ExportError(f"limit must be between 1 and {MAX_CLIPS}, got {limit}")
    episodes = _Episodes(store)
    clips: list[Clip] = []
    offset = 0
    while len(clips) < limit:
        page = run_search(store, query, "shot", min(MAX_LIMIT, limit - len(clips)), offset,
                          min_score=min_score, sort=sort)
        for hit in page.hits:
            if hit.episode_id is None or hit.start_s is None or hit.end_s is None:
                continue
            labels = tuple(f"{e.label_set}:{e.label}" for e in hit.evidence if not e.excluded)
            clips.append(_clip(episodes(hit.episode_id), media, hit.id, hit.start_s,
                               hit.end_s, hit.time_s if hit.time_s is not None else hit.start_s,
                               hit.score, labels))
        offset += len(page.hits)
        if not page.hits or offset >= page.total:
            break
    return ClipList("search", f"tvindex search: {query}", clips, query=query)


def episode_clips(store: CatalogueReader, episode_id: str, *, media: MediaRef = _path
                  ) -> ClipList:
    """Every shot of the episode in time order (labels: each set's best label)."""
    ep = store.episode(episode_id)  # NotFound for an unknown id
    clips = []
    for seg in store.segments(episode_id):
        labels = tuple(f"{name}:{top[0].label}" for name, top in seg.top_labels.items() if top)
        clips.append(_clip(ep, media, seg.id, seg.start_s, seg.end_s, seg.time_s, None,
                           labels))
    title = " - ".join(t for t in (ep.programme_title, ep.title) if t) or ep.id
    return ClipList("episode", title, clips, episode_id=episode_id)
