"""Searching the SQLite catalogue: a ``ResolvedQuery``'s filters as SQL, each label's
postings (shots: packed per episode; episodes and programmes: kept-label rows), and the
documented ranking (``search.ranking``); shot-level ranking reads dense label columns
cached in memory (``search.backends.sqlite.shot_columns``) until the next write."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from search.backends.sqlite.genres import genre_filter
from search.backends.sqlite.schema import SHOT_BITS, SqliteBase, f32
from search.backends.sqlite.shot_columns import ShotColumnCache
from search.backends.sqlite.word_search import has_words
from search.ranking import Postings, SortKey, empty_postings, evidence, rank, rank_columns
from tvindex.core.records import Hit, Level, SearchPage, shot_id
from tvindex.core.store import StoreError


class SqliteSearch(SqliteBase):
    """``search`` of ``SqliteStore``."""

    _shot_columns: ShotColumnCache

    def _allowed(self, query: Any, level: Level) -> np.ndarray | None:
        """Sorted keys (episode or programme keys; for shots, episode keys) that pass the
        filters, or None when the query has no filter."""
        where, params = ["e.status = 'indexed'"], []
        if query.programme_ids:
            where.append(f"p.id IN ({','.join('?' * len(query.programme_ids))})")
            params += list(query.programme_ids)
        # genre: catalogue genres (a ';'-separated list); anygenre: or predicted ones
        genre_where, genre_params = genre_filter(
            query.genres, getattr(query, "any_genres", ()), level)
        where += genre_where
        params += genre_params
        if query.after:
            where.append("e.air_date >= ?")
            params.append(query.after.isoformat())
        if query.before:
            where.append("e.air_date <= ?")
            params.append(query.before.isoformat())
        episode_ids = getattr(query, "episode_ids", ())
        if episode_ids:
            where.append(f"e.id IN ({','.join('?' * len(episode_ids))})")
            params += list(episode_ids)
        if len(where) == 1:
            return None  # only indexed episodes have rows: no filter needed
        col = "p.key" if level == "programme" else "e.key"
        rows = self.db.execute(
            f"SELECT DISTINCT {col} FROM episodes e JOIN programmes p ON p.key = e.programme_key "
            f"WHERE {' AND '.join(where)} ORDER BY 1", params).fetchall()
        return np.asarray([r[0] for r in rows], np.int64)

    def _postings(self, level: Level, label_id: int, allowed: np.ndarray | None) -> Postings:
        """(ids, scores, present) of one label at a level (see ``search.ranking``): present
        when some frame reached the set's threshold (coverage > 0) and, for a shot, its
        episode keeps the label too: the rule ``labels()`` counts with."""
        if level == "shot":
            rows = self.db.execute(
                "SELECT sp.episode_key, sp.idx, sp.score, sp.coverage, el.label_id IS NOT NULL "
                "FROM segment_postings sp LEFT JOIN episode_labels el ON "
                "el.label_id = sp.label_id AND el.episode_key = sp.episode_key "
                "WHERE sp.label_id=? ORDER BY sp.episode_key", (label_id,)).fetchall()
            if allowed is not None:
                ok = set(allowed.tolist())
                rows = [r for r in rows if r[0] in ok]
            if not rows:
                return empty_postings()
            # Decode all rows at once (one join per column), not one small array per row.
            keys, idx_blobs, score_blobs, cover_blobs, kept = zip(*rows)
            counts = np.fromiter(map(len, idx_blobs), np.int64, len(rows)) // 4
            ids = ((np.repeat(np.asarray(keys, np.int64), counts) << SHOT_BITS)
                   | np.frombuffer(b"".join(idx_blobs), np.uint32))
            scores = f32(b"".join(score_blobs))
            present = (f32(b"".join(cover_blobs)) > 0) & np.repeat(np.asarray(kept, bool),
                                                                   counts)
            if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):
                return ids, scores, present  # rows by episode, segments in order: sorted
        else:
            table, col = (("episode_labels", "episode_key") if level == "episode"
                          else ("programme_labels", "programme_key"))
            rows = self.db.execute(f"SELECT {col}, score, coverage FROM {table} "
                                   "WHERE label_id=?", (label_id,)).fetchall()
            ids = np.asarray([r[0] for r in rows], np.int64)
            scores = np.asarray([r[1] for r in rows], np.float32)
            present = np.asarray([r[2] > 0 for r in rows], bool)
            if allowed is not None:
                keep = np.isin(ids, allowed)
                ids, scores, present = ids[keep], scores[keep], present[keep]
        order = np.argsort(ids, kind="stable")
        return ids[order], scores[order], present[order]

    def _all_shot_ids(self) -> np.ndarray:
        """Sorted ids of every shot in the store (segment indices are 0..n-1 per episode,
        as the indexer writes them; other layouts are read row by row)."""
        ids = []
        for key, n, lo, hi in self.db.execute(
                "SELECT episode_key, count(*), min(idx), max(idx) FROM segments "
                "GROUP BY episode_key ORDER BY episode_key"):
            if hi - lo + 1 == n:
                ids.append((np.int64(key) << SHOT_BITS) | np.arange(lo, hi + 1, dtype=np.int64))
            else:
                ids.append(np.asarray(sorted((key << SHOT_BITS) | i for (i,) in self.db.execute(
                    "SELECT idx FROM segments WHERE episode_key=?", (key,))), np.int64))
        return np.concatenate(ids) if ids else np.empty(0, np.int64)

    def _rank_shots(self, query: Any, allowed: np.ndarray | None, top: int | None, *,
                    min_score: float = 0.0, sort_key: SortKey | None = None,
                    descending: bool = True):
        """Shot-level ranking over the dense column cache (same results as ``rank``)."""
        soft_refs = getattr(query, "soft_excluded", ())
        labels = [ref.label_id for g in query.groups for ref in g]
        labels += [ref.label_id for ref in (*query.excluded, *soft_refs)]
        ids, cols = self._shot_columns.columns(self.write_version(), labels)
        mask = None if allowed is None else np.isin(ids >> SHOT_BITS, allowed)
        return rank_columns([[cols[ref.label_id] for ref in g] for g in query.groups],
                            [cols[ref.label_id] for ref in query.excluded], ids, mask, top,
                            soft=[cols[ref.label_id] for ref in soft_refs],
                            min_score=min_score, sort_key=sort_key, descending=descending)

    def _sort_key(self, level: Level, sort: str) -> SortKey | None:
        """Per item: its air date (a day number; a programme's latest indexed episode's) or
        duration in seconds (a shot's end - start, an episode's, the sum of a programme's
        indexed episodes'); NaN where unknown."""
        if sort == "score":
            return None
        db = self.db

        def lookup(ids: np.ndarray, table: dict[int, float]) -> np.ndarray:
            return np.asarray([table.get(int(i), np.nan) for i in ids], np.float64)

        def day(text: str | None) -> float:
            return float(dt.date.fromisoformat(text).toordinal()) if text else np.nan

        if level == "programme":
            rows = db.execute("SELECT programme_key, max(air_date), sum(duration_s) FROM "
                              "episodes WHERE status='indexed' GROUP BY programme_key")
        else:
            rows = db.execute("SELECT key, air_date, duration_s FROM episodes "
                              "WHERE status='indexed'")
        by_key = {k: (day(a), np.nan if d is None else float(d)) for k, a, d in rows}
        if sort == "air_date":
            dates = {k: v[0] for k, v in by_key.items()}
            if level == "shot":
                return lambda ids: lookup(ids >> SHOT_BITS, dates)
            return lambda ids: lookup(ids, dates)
        if level != "shot":
            durations = {k: v[1] for k, v in by_key.items()}
            return lambda ids: lookup(ids, durations)

        def shot_durations(ids: np.ndarray) -> np.ndarray:
            got: dict[int, float] = {}
            eps = np.unique(ids >> SHOT_BITS).tolist()
            for chunk in range(0, len(eps), 500):
                part = eps[chunk:chunk + 500]
                got.update(((k << SHOT_BITS) | i, e - s) for k, i, s, e in db.execute(
                    "SELECT episode_key, idx, start_s, end_s FROM segments WHERE episode_key "
                    f"IN ({','.join('?' * len(part))})", part))
            return lookup(ids, got)

        return shot_durations

    def _universe(self, level: Level, allowed: np.ndarray | None) -> np.ndarray:
        """Every item of a level that passes the filters (for filter-only queries)."""
        if level == "shot":
            keys = allowed.tolist() if allowed is not None else []
            ids = [(k << SHOT_BITS) | i for k in keys for (i,) in self.db.execute(
                "SELECT idx FROM segments WHERE episode_key=?", (k,))]
            return np.asarray(sorted(ids), np.int64)
        if allowed is not None:
            return allowed
        sql = ("SELECT key FROM episodes WHERE status='indexed'" if level == "episode" else
               "SELECT DISTINCT programme_key FROM episodes WHERE status='indexed'")
        return np.asarray(sorted(r[0] for r in self.db.execute(sql)), np.int64)

    def search(self, query: Any, level: Level = "shot", limit: int = 20,
               offset: int = 0, *, min_score: float = 0.0, sort: str = "score",
               descending: bool = True) -> SearchPage:
        if level not in ("shot", "episode", "programme"):
            raise StoreError(f"unknown level {level!r}")
        ranked, total = self.rank_query(query, level, offset + limit, min_score=min_score,
                                        sort=sort, descending=descending)
        hits = []
        for j in range(offset, min(offset + limit, len(ranked.ids))):
            hit = self._hit(level, int(ranked.ids[j]), float(ranked.scores[j]))
            hit.evidence = evidence(query, ranked, j)
            hits.append(hit)
        self._add_word_evidence(query, level, hits)  # type: ignore[attr-defined]  # words
        return SearchPage(hits, total, offset, limit, level,
                          query.to_dict() if hasattr(query, "to_dict") else {})

    def rank_query(self, query: Any, level: Level, top: int | None, *, min_score: float = 0.0,
                   sort: str = "score", descending: bool = True):
        """(ranked, total) of a resolved query: its best ``top`` items in order (None: all)
        and, in ``ranked.matched``, every matched item id."""
        allowed = self._allowed(query, level)
        sort_key = self._sort_key(level, sort)
        opts: dict[str, Any] = {"min_score": min_score, "sort_key": sort_key,
                                "descending": descending}
        if level == "shot" and query.groups and not has_words(query):
            return self._rank_shots(query, allowed, top, **opts)
        groups = [[self._postings(level, ref.label_id, allowed) for ref in g]
                  for g in query.groups]
        excluded = [self._postings(level, ref.label_id, allowed) for ref in query.excluded]
        soft = [self._postings(level, ref.label_id, allowed)
                for ref in getattr(query, "soft_excluded", ())]
        # Word terms (issue 17; sqlite/word_search.py): more groups and hard exclusions.
        groups += self._word_group_postings(query, level, allowed)  # type: ignore[attr-defined]
        excluded += self._word_excluded_postings(query, level, allowed)  # type: ignore[attr-defined]
        universe = None
        if not groups:
            universe = self._universe(level, allowed)
        elif allowed is not None and level != "shot":
            universe = allowed
        return rank(groups, excluded, universe, top, soft=soft, **opts)

    def _hit(self, level: Level, item: int, score: float) -> Hit:
        db = self.db
        if level == "programme":
            pid, title = db.execute("SELECT id, title FROM programmes WHERE key=?",
                                    (item,)).fetchone()
            return Hit(level, pid, round(score, 6), pid, title)
        ep_key = item >> SHOT_BITS if level == "shot" else item
        eid, etitle, air, pid, ptitle = db.execute(
            "SELECT e.id, e.title, e.air_date, p.id, p.title FROM episodes e "
            "JOIN programmes p ON p.key = e.programme_key WHERE e.key=?", (ep_key,)).fetchone()
        hit = Hit(level, eid, round(score, 6), pid, ptitle, eid, etitle, air)
        if level == "shot":
            idx = item & ((1 << SHOT_BITS) - 1)
            start, end, time_s = db.execute(
                "SELECT start_s, end_s, time_s FROM segments WHERE episode_key=? AND idx=?",
                (ep_key, idx)).fetchone()
            hit.id = shot_id(eid, idx)
            hit.start_s, hit.end_s, hit.time_s = start, end, time_s
        return hit
