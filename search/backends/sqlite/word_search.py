"""Word terms in a SQLite search (``said:``, ``screen:``, ``subtitle:``, ``text:``): the
segments an FTS5 query matches (scored ``-bm25()`` normalised by ``search.words``), as
postings at the search level (a shot: the segments overlapping it; an episode: its segments;
a programme: its episodes'), ranked with the label postings by ``search.ranking``."""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from typing import Any

import numpy as np

from search.backends.sqlite.schema import SHOT_BITS, SqliteBase
from search.ranking import Postings
from search.words import (
    SegmentHit,
    WordMatch,
    best_segment,
    episode_postings,
    normalise_score,
    overlapping,
    word_evidence,
)
from tvindex.core.records import Hit, Level
from tvindex.core.store import StoreError

# Segments a word term may match before ranking (a safety bound on one term's work).
MAX_SEGMENT_HITS = 200_000
_FEW = 500  # keys bound into one SQL statement
_LAST = threading.local()  # (query, level, chosen segments) of this thread's last ranking
_CACHED_HITS = 20_000  # a word term's answer kept (until the next write) up to this size
_CACHE_ENTRIES = 16
_CACHE_LOCK = threading.Lock()


def fts_expression(match: WordMatch) -> str:
    """The FTS5 MATCH text for a word term (tokens are letters and digits only)."""
    def phrase(tokens: tuple[str, ...]) -> str:
        return '"' + " ".join(tokens) + '"'

    parts = [f"surface : {phrase(match.tokens)}"]
    parts += [f"stems : {phrase(seq)}" for seq in match.stem_alternatives()]
    return " OR ".join(parts)


class SqliteWordSearch(SqliteBase):
    """The word terms of ``SqliteStore.search``."""

    # --- searching ------------------------------------------------------------------------
    def _segment_hits(self, ref: Any, level: Level = "episode",
                      allowed: np.ndarray | None = None) -> list[SegmentHit]:
        """The indexed episodes' segments a word term matches, with their text scores
        (``allowed``: at least these episode keys, programme keys at the programme level; the
        caller filters). Answers of up to ``_CACHED_HITS`` segments are kept until the next
        write (an episode search asks again for each hit's best shot; paging asks again)."""
        match = WordMatch.of(ref.value)
        if not match.tokens:
            return []
        key = (fts_expression(match), ref.source, self.write_version())
        cache = self.__dict__.setdefault("_fts_cache", OrderedDict())
        with _CACHE_LOCK:
            found = cache.get(key)
            if found is not None:
                cache.move_to_end(key)
                return found
        # A few allowed keys and a large answer: ask for those keys only, and keep nothing.
        restrict = (allowed is not None and len(allowed) <= _FEW
                    and self._fts_count(match) > _CACHED_HITS)
        hits = self._segment_hits_uncached(ref, match, level, allowed if restrict else None)
        if not restrict and len(hits) <= _CACHED_HITS:
            with _CACHE_LOCK:
                cache[key] = hits
                while len(cache) > _CACHE_ENTRIES:
                    cache.popitem(last=False)
        return hits

    def _segment_hits_uncached(self, ref: Any, match: WordMatch, level: Level,
                               allowed: np.ndarray | None) -> list[SegmentHit]:
        # The full-text match first, materialised: joined the other way round, SQLite would
        # run the FTS query again for every segment of the allowed episodes.
        sql = ("WITH m AS MATERIALIZED (SELECT rowid AS id, -bm25(text_fts) AS s FROM text_fts "
               "WHERE text_fts MATCH ?) "
               "SELECT s.episode_key, e.programme_key, s.start_s, s.end_s, s.source, "
               "s.language, s.text, m.s FROM m "
               "JOIN text_segments s ON s.id = m.id "
               "JOIN episodes e ON e.key = s.episode_key "
               "WHERE e.status = 'indexed'")
        params: list[Any] = [fts_expression(match)]
        if ref.source is not None:
            sql += " AND s.source = ?"
            params.append(ref.source)
        if allowed is not None:
            col = "e.programme_key" if level == "programme" else "s.episode_key"
            sql += f" AND {col} IN ({','.join('?' * len(allowed))})"
            params += allowed.tolist()
        rows = self.db.execute(sql + f" LIMIT {MAX_SEGMENT_HITS + 1}", params).fetchall()
        if len(rows) > MAX_SEGMENT_HITS:
            raise StoreError(f"'{ref.field}:{ref.value}' matches more than "
                             f"{MAX_SEGMENT_HITS} text segments; add a word or search a phrase")
        return [SegmentHit(ek, pk, start, end, src, lang, text, normalise_score(s))
                for ek, pk, start, end, src, lang, text, s in rows]

    def _fts_count(self, match: WordMatch) -> int:
        """How many segments (any source, any episode) the match finds."""
        return int(self.db.execute("SELECT count(*) FROM text_fts WHERE text_fts MATCH ?",
                                   (fts_expression(match),)).fetchone()[0])

    def _word_postings(self, level: Level, hits: list[SegmentHit], allowed: np.ndarray | None,
                       only: set[int] | None = None
                       ) -> tuple[tuple[np.ndarray, np.ndarray], dict[int, SegmentHit]]:
        """A word term's postings at ``level`` and, per item, the segment that scored it
        (``only``: just these items, e.g. a page's)."""
        if only is not None:
            eps = {k >> SHOT_BITS for k in only} if level == "shot" else only
            hits = [h for h in hits if (h.programme_key if level == "programme"
                                        else h.episode_key) in eps]
        if allowed is not None:
            ok = set(allowed.tolist())
            hits = [h for h in hits if (h.programme_key if level == "programme"
                                        else h.episode_key) in ok]
        if level != "shot":
            postings = episode_postings(hits, programme=level == "programme")
            by_item: dict[int, list[SegmentHit]] = defaultdict(list)
            for h in hits:
                by_item[h.programme_key if level == "programme" else h.episode_key].append(h)
            return postings, {k: best_segment(v) for k, v in by_item.items()}  # type: ignore[misc]
        per_episode: dict[int, list[SegmentHit]] = defaultdict(list)
        for h in sorted(hits, key=lambda h: (h.start_s, h.end_s)):  # ties: the earliest
            per_episode[h.episode_key].append(h)
        best: dict[int, SegmentHit] = {}
        keys = sorted(per_episode)
        for i in range(0, len(keys), _FEW):  # the episodes' shots, a few hundred at a time
            part = keys[i:i + _FEW]
            rows = self.db.execute(
                "SELECT episode_key, idx, start_s, end_s FROM segments WHERE episode_key IN "
                f"({','.join('?' * len(part))}) ORDER BY episode_key, idx", part).fetchall()
            shots: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
            for key, idx, a, b in rows:
                shots[key].append((idx, a, b))
            for key in part:
                if shots.get(key):
                    best.update(_best_per_shot(key, shots[key], per_episode[key]))
        ids = np.asarray(sorted(best), np.int64)
        scores = np.asarray([best[i].score for i in ids.tolist()], np.float32)
        return (ids, scores), best

    def _word_group_postings(self, query: Any, level: Level, allowed: np.ndarray | None
                             ) -> list[list[Postings]]:
        """Each word group's alternatives as postings (``search.ranking``'s triples: a
        matched item is present), after the label groups. Which segment scored each item is
        kept for this thread's next ``_add_word_evidence`` of the same query."""
        out, chosen = [], []
        for g in getattr(query, "word_groups", ()):
            alts = [self._word_postings(level, self._segment_hits(ref, level, allowed), allowed)
                    for ref in g]
            out.append([_present(p) for p, _ in alts])
            chosen.append([b for _, b in alts])
        _LAST.value = (query, level, chosen)
        return out

    def _word_excluded_postings(self, query: Any, level: Level, allowed: np.ndarray | None
                                ) -> list[Postings]:
        """Excluded word terms as postings: hard exclusions (the items they match go)."""
        return [_present(self._word_postings(
            level, self._segment_hits(ref, level, allowed), allowed)[0])
            for ref in getattr(query, "word_excluded", ())]

    def _add_word_evidence(self, query: Any, level: Level, hits: list[Hit]) -> None:
        """``hit.words`` of a page: per word group, the best segment of the item among the
        group's alternatives, with its highlighted snippet and times."""
        groups = getattr(query, "word_groups", ())
        last, _LAST.value = getattr(_LAST, "value", None), None
        if not groups or not hits:
            return
        keys = [self._item_key(level, h) for h in hits]
        kept = last[2] if last is not None and last[0] is query and last[1] == level else None
        for w, g in enumerate(groups):
            best: list[tuple[Any, SegmentHit] | None] = [None] * len(hits)
            for a, ref in enumerate(g):
                if kept is not None:
                    by_item = kept[w][a]
                else:
                    _, by_item = self._word_postings(level, self._segment_hits(ref), None,
                                                     only=set(keys))
                for j, key in enumerate(keys):
                    seg = by_item.get(key)
                    if seg is not None and (best[j] is None or seg.score > best[j][1].score):
                        best[j] = (ref, seg)
            for hit, chosen in zip(hits, best):
                if chosen is not None:
                    hit.words.append(word_evidence(chosen[0], chosen[1], chosen[1].score))

    def _item_key(self, level: Level, hit: Hit) -> int:
        if level == "programme":
            return int(self.db.execute("SELECT key FROM programmes WHERE id=?",
                                       (hit.id,)).fetchone()[0])
        key = int(self.db.execute("SELECT key FROM episodes WHERE id=?",
                                  (hit.episode_id,)).fetchone()[0])
        if level == "episode":
            return key
        return (key << SHOT_BITS) | int(hit.id.rsplit("@", 1)[1])


def _best_per_shot(key: int, shots: list[tuple[int, float, float]], hits: list[SegmentHit]
                   ) -> dict[int, SegmentHit]:
    """Shot id -> the best of ``hits`` (in time order) overlapping the shot (ties: the
    earliest), for one episode's shots ``(index, start_s, end_s)``."""
    idx = np.asarray([s[0] for s in shots], np.int64)
    starts = np.asarray([s[1] for s in shots], np.float64)
    ends = np.asarray([s[2] for s in shots], np.float64)
    mask = np.stack([overlapping(starts, ends, h.start_s, h.end_s) for h in hits])  # [m, n]
    scores = np.where(mask, np.asarray([h.score for h in hits])[:, None], -1.0)
    first = scores.argmax(axis=0)  # the first (earliest) of the best
    covered = mask.any(axis=0)
    return {(key << SHOT_BITS) | int(idx[i]): hits[int(first[i])]
            for i in np.flatnonzero(covered).tolist()}


def _present(postings: tuple[np.ndarray, np.ndarray]) -> Postings:
    ids, scores = postings
    return ids, scores, np.ones(len(ids), bool)


def has_words(query: Any) -> bool:
    return bool(getattr(query, "word_groups", ()) or getattr(query, "word_excluded", ()))
