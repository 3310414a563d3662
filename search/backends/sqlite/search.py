"""Searching the SQLite catalogue: a ``ResolvedQuery``'s filters as SQL, each label's
postings (shots: packed per episode; episodes and programmes: kept-label rows), and the
documented ranking (``search.ranking``); shot-level ranking reads dense label columns
cached in memory (``search.backends.sqlite.shot_columns``) until the next write."""

from __future__ import annotations

from typing import Any

import numpy as np

from search.backends.sqlite.schema import SHOT_BITS, SqliteBase, f32
from search.backends.sqlite.shot_columns import ShotColumnCache
from search.ranking import Postings, evidence, rank, rank_columns
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
        if query.genres:
            where.append(f"lower(p.genre) IN ({','.join('?' * len(query.genres))})")
            params += [g.lower() for g in query.genres]
        if query.after:
            where.append("e.air_date >= ?")
            params.append(query.after.isoformat())
        if query.before:
            where.append("e.air_date <= ?")
            params.append(query.before.isoformat())
        if len(where) == 1:
            return None  # only indexed episodes have rows: no filter needed
        col = "p.key" if level == "programme" else "e.key"
        rows = self.db.execute(
            f"SELECT DISTINCT {col} FROM episodes e JOIN programmes p ON p.key = e.programme_key "
            f"WHERE {' AND '.join(where)} ORDER BY 1", params).fetchall()
        return np.asarray([r[0] for r in rows], np.int64)

    def _postings(self, level: Level, label_id: int, allowed: np.ndarray | None) -> Postings:
        if level == "shot":
            rows = self.db.execute("SELECT episode_key, idx, score FROM segment_postings "
                                   "WHERE label_id=? ORDER BY episode_key",
                                   (label_id,)).fetchall()
            if allowed is not None:
                ok = set(allowed.tolist())
                rows = [r for r in rows if r[0] in ok]
            if not rows:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            # Decode all rows at once (one join per column), not one small array per row.
            keys, idx_blobs, score_blobs = zip(*rows)
            counts = np.fromiter(map(len, idx_blobs), np.int64, len(rows)) // 4
            ids = ((np.repeat(np.asarray(keys, np.int64), counts) << SHOT_BITS)
                   | np.frombuffer(b"".join(idx_blobs), np.uint32))
            scores = f32(b"".join(score_blobs))
            if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):
                return ids, scores  # rows by episode, segments in order: already sorted
        else:
            table, col = (("episode_labels", "episode_key") if level == "episode"
                          else ("programme_labels", "programme_key"))
            rows = self.db.execute(f"SELECT {col}, score FROM {table} "
                                   "WHERE label_id=?", (label_id,)).fetchall()
            ids = np.asarray([r[0] for r in rows], np.int64)
            scores = np.asarray([r[1] for r in rows], np.float32)
            if allowed is not None:
                keep = np.isin(ids, allowed)
                ids, scores = ids[keep], scores[keep]
        order = np.argsort(ids, kind="stable")
        return ids[order], scores[order]

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

    def _rank_shots(self, query: Any, allowed: np.ndarray | None, top: int):
        """Shot-level ranking over the dense column cache (same results as ``rank``)."""
        labels = [ref.label_id for g in query.groups for ref in g]
        labels += [ref.label_id for ref in query.excluded]
        ids, cols = self._shot_columns.columns(self.write_version(), labels)
        mask = None if allowed is None else np.isin(ids >> SHOT_BITS, allowed)
        return rank_columns([[cols[ref.label_id] for ref in g] for g in query.groups],
                            [cols[ref.label_id] for ref in query.excluded], ids, mask, top)

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
               offset: int = 0) -> SearchPage:
        if level not in ("shot", "episode", "programme"):
            raise StoreError(f"unknown level {level!r}")
        allowed = self._allowed(query, level)
        if level == "shot" and query.groups:
            ranked, total = self._rank_shots(query, allowed, top=offset + limit)
        else:
            groups = [[self._postings(level, ref.label_id, allowed) for ref in g]
                      for g in query.groups]
            excluded = [self._postings(level, ref.label_id, allowed) for ref in query.excluded]
            universe = None
            if not groups:
                universe = self._universe(level, allowed)
            elif allowed is not None and level != "shot":
                universe = allowed
            ranked, total = rank(groups, excluded, universe, top=offset + limit)
        hits = []
        for j in range(offset, min(offset + limit, len(ranked.ids))):
            hit = self._hit(level, int(ranked.ids[j]), float(ranked.scores[j]))
            hit.evidence = evidence(query, ranked, j)
            hits.append(hit)
        return SearchPage(hits, total, offset, limit, level,
                          query.to_dict() if hasattr(query, "to_dict") else {})

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
