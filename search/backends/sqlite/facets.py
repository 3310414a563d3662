"""Facets on the SQLite catalogue (the rules: ``search/facets.py``), counted with numpy over
the full matched id set of the ranking (``Ranked.matched``), never with SQL over all shots.

Per store write version (like the shot-column cache, and dropped with it on any write) a
:class:`FacetTables` keeps, built on first use:

* episode key -> programme key and air year (dense arrays by key);
* (programme key, genre) pairs of the catalogue genres, (programme key, year) pairs;
* label presence as (item, label) pairs sorted by item: episodes and programmes from the
  kept-label rows with coverage > 0; shots from the posting lists (coverage > 0 and the
  episode keeps the label), items numbered by their position in the sorted shot ids: a sparse
  presence matrix, ~12 bytes per present (shot, label).

A query's counts are then ``bincount``s: items -> programmes -> genres, items -> years,
and the presence pairs of the matched items -> labels.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import numpy as np

from search.backends.sqlite.schema import SHOT_BITS, SqliteBase, f32
from search.facets import FACETS, FacetCounts, own_labels, top_counts
from tvindex.core.records import LEVELS, Level
from tvindex.core.store import StoreError


def _year(text: str | None) -> int:
    if not text:
        return 0
    try:
        return dt.date.fromisoformat(text).year
    except ValueError:
        return 0


class FacetTables:
    """What facets read, for one write version of one store."""

    def __init__(self, db: Any, shot_ids: Any) -> None:
        self._db = db
        self._shot_ids = shot_ids  # () -> sorted shot ids (the column cache's)
        self._lock = threading.Lock()
        self._presence: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rows = db.execute("SELECT key, programme_key, air_date FROM episodes "
                          "WHERE status='indexed'").fetchall()
        n = max((r[0] for r in rows), default=0) + 1
        self.ep_prog = np.full(n, -1, np.int64)
        self.ep_year = np.zeros(n, np.int64)
        for key, prog, air in rows:
            self.ep_prog[key] = prog
            self.ep_year[key] = _year(air)
        progs = db.execute("SELECT key, id FROM programmes").fetchall()
        self.n_prog = max((k for k, _ in progs), default=0) + 1
        self.prog_id = {k: pid for k, pid in progs}
        genres = db.execute("SELECT programme_key, genre FROM programme_genres "
                            "WHERE predicted=0").fetchall()
        self.genre_names = sorted({g for _, g in genres})
        gidx = {g: i for i, g in enumerate(self.genre_names)}
        self.pg_prog = np.asarray([k for k, _ in genres], np.int64)
        self.pg_genre = np.asarray([gidx[g] for _, g in genres], np.int64)
        pairs = {(int(p), int(y)) for p, y in zip(self.ep_prog, self.ep_year, strict=True)
                 if p >= 0 and y > 0}
        self.py_prog = np.asarray([p for p, _ in sorted(pairs)], np.int64)
        self.py_year = np.asarray([y for _, y in sorted(pairs)], np.int64)
        self.label_names = {lid: f"{s}:{name}" for lid, s, name in db.execute(
            "SELECT l.id, ls.name, l.name FROM labels l JOIN label_sets ls ON ls.key = l.set_key")}

    def presence(self, level: Level) -> tuple[np.ndarray, np.ndarray]:
        """(item [P], label [P]) of every present label, items as numbered for ``level``."""
        with self._lock:
            got = self._presence.get(level)
            if got is None:
                got = self._load_presence(level)
                self._presence[level] = got
            return got

    def _load_presence(self, level: Level) -> tuple[np.ndarray, np.ndarray]:
        db = self._db
        if level != "shot":
            table, col = (("episode_labels", "episode_key") if level == "episode"
                          else ("programme_labels", "programme_key"))
            rows = np.asarray(db.execute(f"SELECT {col}, label_id FROM {table} "
                                         "WHERE coverage > 0").fetchall(), np.int64)
            rows = rows.reshape(-1, 2)
            return rows[:, 0].copy(), rows[:, 1].copy()
        shot_ids = self._shot_ids()
        items, labels = [], []
        for label_id, key, idx_blob, cover_blob in db.execute(
                "SELECT sp.label_id, sp.episode_key, sp.idx, sp.coverage FROM segment_postings sp "
                "JOIN episode_labels el ON el.label_id = sp.label_id AND "
                "el.episode_key = sp.episode_key"):
            idx = np.frombuffer(idx_blob, np.uint32)[f32(cover_blob) > 0]
            if len(idx):
                items.append((np.int64(key) << SHOT_BITS) | idx.astype(np.int64))
                labels.append(np.full(len(idx), label_id, np.int32))
        if not items:
            return np.empty(0, np.int64), np.empty(0, np.int32)
        ids = np.concatenate(items)
        lab = np.concatenate(labels)
        pos = np.searchsorted(shot_ids, ids)
        ok = (pos < len(shot_ids)) & (shot_ids[np.minimum(pos, len(shot_ids) - 1)] == ids)
        pos, lab = pos[ok], lab[ok]
        order = np.argsort(pos, kind="stable")
        return pos[order].astype(np.int32), lab[order]

    def row_starts(self, level: Level) -> np.ndarray:
        """CSR row pointers of the shot presence pairs: shot row r owns pairs
        ``starts[r]:starts[r + 1]``."""
        with self._lock:
            got = self._presence.get("shot-rows")
            if got is None:
                items = self._presence["shot"][0]
                got = (np.searchsorted(items, np.arange(len(self._shot_ids()) + 1)), items)
                self._presence["shot-rows"] = got  # type: ignore[assignment]
            return got[0]

    def counts(self, level: Level, matched: np.ndarray, query: Any, size: int,
               names: tuple[str, ...]) -> FacetCounts:
        out: FacetCounts = {}
        matched = np.asarray(matched, np.int64)
        if level == "programme":
            progs = matched
            eps = None
        else:
            eps = matched >> SHOT_BITS if level == "shot" else matched
            progs = self.ep_prog[eps]
        per_prog = np.bincount(progs[progs >= 0], minlength=self.n_prog)
        if "programme" in names:
            nz = np.flatnonzero(per_prog)
            out["programme"] = top_counts(
                ((self.prog_id[int(k)], int(per_prog[k])) for k in nz), size)
        if "genre" in names:
            per_genre = np.bincount(self.pg_genre, weights=per_prog[self.pg_prog],
                                    minlength=len(self.genre_names)) if len(self.pg_genre) \
                else np.zeros(0)
            out["genre"] = top_counts(zip(self.genre_names, per_genre.astype(np.int64).tolist(),
                                          strict=True), size)
        if "year" in names:
            if eps is None:
                mine = per_prog[self.py_prog] > 0 if len(self.py_prog) else np.zeros(0, bool)
                years = self.py_year[mine]
            else:
                years = self.ep_year[eps]
            per_year = np.bincount(years[years > 0]) if len(years) else np.zeros(0, np.int64)
            out["year"] = top_counts(((str(y), int(per_year[y]))
                                      for y in np.flatnonzero(per_year)), size)
        if "label" in names:
            out["label"] = self._label_counts(level, matched, query, size)
        return out

    def _label_counts(self, level: Level, matched: np.ndarray, query: Any, size: int
                      ) -> list[tuple[str, int]]:
        items, labels = self.presence(level)
        if not len(items) or not len(matched):
            return []
        if level == "shot":
            shot_ids = self._shot_ids()
            rows = np.searchsorted(shot_ids, matched)
            starts = self.row_starts(level)
            lo, n = starts[rows], starts[rows + 1] - starts[rows]
            total = int(n.sum())
            if total * 4 < len(items):
                # Few matched shots: gather only their pairs (CSR rows), not every pair.
                ends = np.cumsum(n)
                pick = np.arange(total) + np.repeat(lo - (ends - n), n)
                per_label = np.bincount(labels[pick])
                return self._top_labels(per_label, query, size)
            mask = np.zeros(len(shot_ids) + 1, bool)
            mask[rows] = True
        else:
            mask = np.zeros(int(max(items.max(), matched.max())) + 1, bool)
            mask[matched] = True
        return self._top_labels(np.bincount(labels[mask[items]]), query, size)

    def _top_labels(self, per_label: np.ndarray, query: Any, size: int
                    ) -> list[tuple[str, int]]:
        own = own_labels(query)
        return top_counts(((self.label_names.get(int(lid), str(lid)), int(per_label[lid]))
                           for lid in np.flatnonzero(per_label) if int(lid) not in own), size)


class SqliteFacets(SqliteBase):
    """``facets`` of ``SqliteStore``."""

    _facet_state: tuple[object, FacetTables] | None = None

    def _facet_tables(self) -> FacetTables:
        version = self.write_version()
        state = self._facet_state
        if state is None or state[0] != version:
            cache = self._shot_columns  # type: ignore[attr-defined]
            tables = FacetTables(self.db,
                                 lambda: cache.columns(version, [])[0])
            self._facet_state = state = (version, tables)
        return state[1]

    def facets(self, query: Any, level: Level = "shot", size: int = 10, *,
               min_score: float = 0.0, names: tuple[str, ...] = FACETS) -> FacetCounts:
        """Facet counts of every item ``query`` matches at ``level`` (``search/facets.py``)."""
        if level not in LEVELS:
            raise StoreError(f"unknown level {level!r}")
        ranked, _ = self.rank_query(query, level, 1,  # type: ignore[attr-defined]
                                    min_score=min_score)
        return self._facet_tables().counts(level, ranked.matched, query, size, names)
