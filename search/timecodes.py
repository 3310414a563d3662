"""Timecodes on answers: each hit's (and its best shot's and ``then`` moment's) start, end and
representative time as SMPTE labels in its episode's clock (``tvindex.core.timecode``), beside
the seconds; the same for an episode's segments. One store read per page
(``CatalogueReader.episode_clocks``); times of episodes without a clock get None."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tvindex.core.records import SearchPage
from tvindex.core.store import CatalogueReader
from tvindex.core.timecode import EpisodeClock

TIME_KEYS = ("start_s", "end_s", "time_s")


def timecoded(clock: EpisodeClock | None, item: dict[str, Any]) -> dict[str, Any]:
    """``item`` (a segment's or a moment's dict) with ``start_tc``, ``end_tc`` and
    ``time_tc`` beside its seconds (None without a clock or a time); in place."""
    for key in TIME_KEYS:
        value = item.get(key)
        item[key[:-2] + "_tc"] = (clock.timecode(float(value))
                                  if clock is not None and isinstance(value, (int, float))
                                  else None)
    return item


def add_timecodes(store: CatalogueReader, page: SearchPage | Iterable[Any]) -> Any:
    """Fill ``start_tc``/``end_tc``/``time_tc`` of the hits of a page (or a list of hits),
    and of their ``best_shot`` and ``then`` moments, in place; returns what it was given."""
    hits = page.hits if isinstance(page, SearchPage) else list(page)
    ids = {h.episode_id for h in hits if h.episode_id}
    ids |= {h.best_shot["episode_id"] for h in hits
            if h.best_shot and h.best_shot.get("episode_id")}
    clocks = store.episode_clocks(sorted(ids)) if ids else {}
    for hit in hits:
        clock = clocks.get(hit.episode_id or "")
        for name in ("start", "end", "time"):
            seconds = getattr(hit, f"{name}_s")
            setattr(hit, f"{name}_tc", clock.timecode(seconds)
                    if clock is not None and seconds is not None else None)
        if hit.then:
            timecoded(clock, hit.then)
        if hit.best_shot:
            timecoded(clocks.get(hit.best_shot.get("episode_id") or hit.episode_id or ""),
                      hit.best_shot)
    return page
