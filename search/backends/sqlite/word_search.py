"""Word terms in a SQLite search (``said:``, ``screen:``, ``subtitle:``, ``text:``): the
segments an FTS5 query matches (scored ``-bm25()`` normalised by ``search.words``), as
postings at the search level (a shot: the segments overlapping it; an episode: its segments;
a programme: its episodes'), ranked with the label postings by ``search.ranking``."""

from __future__ import annotations

from collections import defaultdict
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
    def _segment_hits(self, ref: Any) -> list[SegmentHit]:
        """The indexed episodes' segments a word term matches, with their text scores."""
        match = WordMatch.of(ref.value)
        if not match.tokens:
            return []
        sql = ("SELECT s.episode_key, e.programme_key, s.start_s, s.end_s, s.source, "
               "s.language, s.text, -bm25(text_fts) FROM text_fts "
               "JOIN text_segments s ON s.id = text_fts.rowid "
               "JOIN episodes e ON e.key = s.episode_key "
               "WHERE text_fts MATCH ? AND e.status = 'indexed'")
        params: list[Any] = [fts_expression(match)]
        if ref.source is not None:
            sql += " AND s.source = ?"
            params.append(ref.source)
        rows = self.db.execute(sql + f" LIMIT {MAX_SEGMENT_HITS + 1}", params).fetchall()
        if len(rows) > MAX_SEGMENT_HITS:
            raise StoreError(f"'{ref.field}:{ref.value}' matches more than "
                             f"{MAX_SEGMENT_HITS} text segments; add a word or search a phrase")
        return [SegmentHit(ek, pk, start, end, src, lang, text, normalise_score(s))
                for ek, pk, start, end, src, lang, text, s in rows]

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
        for h in hits:
            per_episode[h.episode_key].append(h)
        best: dict[int, SegmentHit] = {}
        for key in sorted(per_episode):
            rows = self.db.execute("SELECT idx, start_s, end_s FROM segments "
                                   "WHERE episode_key=? ORDER BY idx", (key,)).fetchall()
            if not rows:
                continue
            idx = np.asarray([r[0] for r in rows], np.int64)
            starts = np.asarray([r[1] for r in rows], np.float64)
            ends = np.asarray([r[2] for r in rows], np.float64)
            for h in per_episode[key]:
                for i in np.flatnonzero(overlapping(starts, ends, h.start_s, h.end_s)).tolist():
                    item = (key << SHOT_BITS) | int(idx[i])
                    old = best.get(item)
                    if old is None or (h.score, -h.start_s) > (old.score, -old.start_s):
                        best[item] = h
        ids = np.asarray(sorted(best), np.int64)
        scores = np.asarray([best[i].score for i in ids.tolist()], np.float32)
        return (ids, scores), best

    def _word_group_postings(self, query: Any, level: Level, allowed: np.ndarray | None
                             ) -> list[list[Postings]]:
        """Each word group's alternatives as postings (``search.ranking``'s triples: a
        matched item is present), after the label groups."""
        return [[_present(self._word_postings(level, self._segment_hits(ref), allowed)[0])
                 for ref in g] for g in getattr(query, "word_groups", ())]

    def _word_excluded_postings(self, query: Any, level: Level, allowed: np.ndarray | None
                                ) -> list[Postings]:
        """Excluded word terms as postings: hard exclusions (the items they match go)."""
        return [_present(self._word_postings(level, self._segment_hits(ref), allowed)[0])
                for ref in getattr(query, "word_excluded", ())]

    def _add_word_evidence(self, query: Any, level: Level, hits: list[Hit]) -> None:
        """``hit.words`` of a page: per word group, the best segment of the item among the
        group's alternatives, with its highlighted snippet and times."""
        groups = getattr(query, "word_groups", ())
        if not groups or not hits:
            return
        keys = [self._item_key(level, h) for h in hits]
        for g in groups:
            best: list[tuple[Any, SegmentHit] | None] = [None] * len(hits)
            for ref in g:
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


def _present(postings: tuple[np.ndarray, np.ndarray]) -> Postings:
    ids, scores = postings
    return ids, scores, np.ones(len(ids), bool)


def has_words(query: Any) -> bool:
    return bool(getattr(query, "word_groups", ()) or getattr(query, "word_excluded", ()))
