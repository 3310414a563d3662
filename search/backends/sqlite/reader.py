"""Reading the SQLite catalogue: episode states, label sets and labels, programmes, episodes
and their segments (as the read models of ``tvindex.core.records``), thumbnails, score
vectors and embeddings."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np

from search.backends.derive import no_embeddings, programme_embeddings, segment_view, top_labels
from search.backends.sqlite.schema import SqliteBase, f32
from tvindex.core.labels import LabelSet
from tvindex.core.records import (
    EpisodeDetail,
    EpisodeState,
    EpisodeSummary,
    LabelInfo,
    Level,
    ProgrammeDetail,
    ProgrammeSummary,
    SegmentView,
    TopLabel,
    shot_id,
)
from tvindex.core.store import NotFound, StoreError
from tvindex.core.timecode import EpisodeClock
from tvindex.core.vectors import unit_rows


class SqliteReader(SqliteBase):
    """The :class:`tvindex.core.store.CatalogueReader` half of ``SqliteStore`` (search
    aside: ``search.backends.sqlite.search``)."""

    def episode_states(self) -> list[EpisodeState]:
        rows = self.db.execute(
            "SELECT e.id, p.id, e.title, e.status, e.fingerprint, e.config_version, e.error, "
            "e.indexed_at, e.n_segments, e.n_frames FROM episodes e "
            "JOIN programmes p ON p.key = e.programme_key ORDER BY p.id, e.id").fetchall()
        return [EpisodeState(*r) for r in rows]

    def label_sets(self) -> list[LabelSet]:
        out = []
        for key, name, act in self.db.execute(
                "SELECT key, name, activation FROM label_sets ORDER BY key").fetchall():
            names = [r[0] for r in self.db.execute(
                "SELECT name FROM labels WHERE set_key=? ORDER BY idx", (key,))]
            out.append(LabelSet(name, act, tuple(names)))
        return out

    def vocabulary_version(self) -> object:
        labels = self.db.execute("SELECT count(*), max(id) FROM labels").fetchone()
        titles = self.db.execute("SELECT count(*), group_concat(id || '\x1f' || title, '\x1e') "
                                 "FROM programmes").fetchone()
        return (*labels, titles[0], hash(titles[1]))

    def catalogue_version(self) -> object:
        return self.write_version()

    def labels(self, label_set: str | None = None, match: str | None = None,
               counts: bool = True) -> list[LabelInfo]:
        sql = ("SELECT l.id, s.name, s.activation, l.name FROM labels l "
               "JOIN label_sets s ON s.key = l.set_key WHERE 1=1")
        params: list[Any] = []
        if label_set:
            sql += " AND s.name = ?"
            params.append(label_set)
        if match:
            sql += " AND l.name LIKE ? ESCAPE '\\'"
            escaped = match.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params.append(f"%{escaped}%")
        rows = self.db.execute(sql + " ORDER BY s.key, l.idx", params).fetchall()
        stats: dict[int, tuple[int, int]] = {}
        if counts and rows:
            for lid, shots, eps in self.db.execute(
                    "SELECT el.label_id, sum(el.shots), sum(el.coverage > 0) FROM episode_labels el "
                    "JOIN episodes e ON e.key = el.episode_key AND e.status = 'indexed' "
                    "GROUP BY el.label_id"):
                stats[lid] = (int(shots or 0), int(eps or 0))
        return [LabelInfo(r[0], r[1], r[2], r[3], *stats.get(r[0], (0, 0))) for r in rows]

    def vocabulary_label_sets(self) -> dict[str, list[tuple[int, str]]]:
        """The resolver's vocabulary from the cached label table: no query per search."""
        out: dict[str, list[tuple[int, str]]] = {}
        for lid, (ls, _idx, name) in sorted(self._labels_by_id().items()):
            out.setdefault(ls, []).append((lid, name))
        return out

    def programme_titles(self) -> list[tuple[str, str]]:
        """Ids and titles only: the resolver needs no episode counts (``programmes()`` joins
        every episode, on every search)."""
        return self.db.execute("SELECT id, title FROM programmes ORDER BY title").fetchall()

    def programmes(self) -> list[ProgrammeSummary]:
        rows = self.db.execute(
            "SELECT p.id, p.title, p.description, p.genre, count(e.key), "
            "sum(e.status='indexed'), min(e.air_date), max(e.air_date) FROM programmes p "
            "LEFT JOIN episodes e ON e.programme_key = p.key GROUP BY p.key ORDER BY p.title"
        ).fetchall()
        return [ProgrammeSummary(r[0], r[1], r[2], r[3], r[4], int(r[5] or 0), r[6], r[7])
                for r in rows]

    def _top_labels(self, table: str, key_col: str, key: int
                    ) -> dict[str, tuple[TopLabel, ...]]:
        by_id = self._labels_by_id()
        rows = self.db.execute(
            f"SELECT label_id, score, coverage FROM {table} WHERE {key_col}=?",
            (key,)).fetchall()
        return top_labels((score, lid, by_id[lid][0], by_id[lid][2], cov)
                          for lid, score, cov in rows)

    def programme(self, programme_id: str) -> ProgrammeDetail:
        row = self.db.execute("SELECT key, id, title, description, genre FROM programmes "
                              "WHERE id=?", (programme_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown programme {programme_id!r}")
        eps = self.db.execute(
            "SELECT id, title, air_date, status, n_segments, duration_s FROM episodes "
            "WHERE programme_key=? ORDER BY air_date, id", (row[0],)).fetchall()
        return ProgrammeDetail(row[1], row[2], row[3], row[4],
                               tuple(EpisodeSummary(*e) for e in eps),
                               self._top_labels("programme_labels", "programme_key", row[0]))

    def episode(self, episode_id: str) -> EpisodeDetail:
        row = self.db.execute(
            "SELECT e.key, e.id, e.title, e.air_date, e.description, e.media_path, e.start_s, "
            "e.end_s, e.status, e.error, e.duration_s, e.n_frames, e.n_segments, e.sampling, "
            "p.id, p.title, e.fingerprint, e.frame_rate, e.start_tc, e.drop_frame, e.vfr "
            "FROM episodes e "
            "JOIN programmes p ON p.key = e.programme_key WHERE e.id=?", (episode_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown episode {episode_id!r}")
        clock = EpisodeClock.stored(*row[-4:], row[6])
        row = row[:-4]
        return EpisodeDetail(*row[1:-1], reindex_requested=row[8] == "indexed" and row[-1] is None,
                             top_labels=self._top_labels("episode_labels", "episode_key", row[0]),
                             clock=clock)

    def episode_clocks(self, episode_ids: Sequence[str]) -> dict[str, EpisodeClock]:
        out: dict[str, EpisodeClock] = {}
        ids = sorted(set(episode_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for eid, *cols in self.db.execute(
                    "SELECT id, frame_rate, start_tc, drop_frame, vfr, start_s FROM episodes "
                    f"WHERE id IN ({','.join('?' * len(chunk))})", chunk):
                clock = EpisodeClock.stored(*cols)
                if clock is not None:
                    out[eid] = clock
        return out

    def segments(self, episode_id: str) -> list[SegmentView]:
        key, _ = self._episode_key(self.db, episode_id)
        names = {ls.name: ls.labels for ls in self.label_sets()}
        return [segment_view(episode_id, idx, start, end, time_s, n, json.loads(top), names)
                for idx, start, end, time_s, n, top in self.db.execute(
                    "SELECT idx, start_s, end_s, time_s, n_frames, top_labels FROM segments "
                    "WHERE episode_key=? ORDER BY idx", (key,))]

    def thumbnail(self, episode_id: str, index: int) -> bytes:
        key, _ = self._episode_key(self.db, episode_id)
        row = self.db.execute("SELECT thumbnail FROM segments WHERE episode_key=? AND idx=?",
                              (key, index)).fetchone()
        if row is None or row[0] is None:
            raise NotFound(f"no thumbnail for {shot_id(episode_id, index)}")
        return bytes(row[0])

    def vectors(self, level: Level, label_set: str) -> tuple[list[str], np.ndarray]:
        if level == "episode":
            sql = ("SELECT e.id, v.score FROM episode_vectors v JOIN episodes e "
                   "ON e.key = v.episode_key JOIN label_sets s ON s.key = v.set_key "
                   "WHERE s.name=? AND e.status='indexed' ORDER BY e.id")
        elif level == "programme":
            sql = ("SELECT p.id, v.score FROM programme_vectors v JOIN programmes p "
                   "ON p.key = v.programme_key JOIN label_sets s ON s.key = v.set_key "
                   "WHERE s.name=? ORDER BY p.id")
        else:
            raise StoreError("vectors are kept per episode and per programme")
        rows = self.db.execute(sql, (label_set,)).fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        return [r[0] for r in rows], np.stack([f32(r[1]) for r in rows])

    # --- embeddings ----------------------------------------------------------------------
    def embedding_model(self) -> str | None:
        row = self.db.execute(
            "SELECT ee.model FROM episode_embeddings ee JOIN episodes e "
            "ON e.key = ee.episode_key AND e.status = 'indexed' "
            "ORDER BY ee.seq DESC, ee.episode_key DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def embeddings(self, level: Level, episode_ids: Sequence[str] | None = None
                   ) -> tuple[list[str], np.ndarray]:
        if level not in ("shot", "episode", "programme"):
            raise StoreError(f"unknown level {level!r}")
        db = self.db
        # One read transaction: the model, the count and the rows agree under a writer.
        db.execute("BEGIN")
        try:
            return self._embeddings(db, level, episode_ids)
        finally:
            db.execute("COMMIT")

    def _embeddings(self, db: sqlite3.Connection, level: Level,
                    episode_ids: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
        model = self.embedding_model()
        if model is None:
            return no_embeddings()
        # The filter as one JSON parameter: no limit on the number of ids.
        where, params = "e.status = 'indexed' AND ee.model = ?", [model]
        if episode_ids is not None:
            only = json.dumps(list(episode_ids))
            if level == "programme":
                where += (" AND e.programme_key IN (SELECT programme_key FROM episodes "
                          "WHERE id IN (SELECT value FROM json_each(?)))")
            else:
                where += " AND e.id IN (SELECT value FROM json_each(?))"
            params.append(only)
        dims = [r[0] for r in db.execute(
            f"SELECT DISTINCT ee.dims FROM episode_embeddings ee JOIN episodes e "
            f"ON e.key = ee.episode_key WHERE {where}", params)]
        if not dims:
            return no_embeddings()
        if len(dims) > 1:
            raise StoreError(f"embedding model {model!r} has rows of {len(dims)} different "
                             f"dimensions {sorted(dims)}; re-index its episodes")
        d = dims[0]
        if level == "episode":
            rows = db.execute(
                f"SELECT e.id, ee.vector FROM episode_embeddings ee JOIN episodes e "
                f"ON e.key = ee.episode_key WHERE {where} ORDER BY e.id", params).fetchall()
            out = np.empty((len(rows), d), np.float32)
            for j, (_, blob) in enumerate(rows):
                out[j] = f32(blob)
            return [r[0] for r in rows], unit_rows(out, in_place=True)
        if level == "programme":
            return programme_embeddings(
                (pid, n, f32(blob)) for pid, n, blob in db.execute(
                    f"SELECT p.id, ee.n_frames, ee.vector FROM episode_embeddings ee "
                    f"JOIN episodes e ON e.key = ee.episode_key JOIN programmes p "
                    f"ON p.key = e.programme_key WHERE {where} ORDER BY p.id", params))
        # Shots: the episodes in id order first (small rows: sorting rows that carry the
        # blobs would copy them all through a temporary b-tree), the count from the blob
        # lengths (kept in the record headers), then every episode's packed block by its
        # key, copied into one preallocated array.
        episodes = db.execute(
            f"SELECT e.key, e.id, length(se.idx) / 4 FROM segment_embeddings se "
            f"JOIN episode_embeddings ee ON ee.episode_key = se.episode_key "
            f"JOIN episodes e ON e.key = se.episode_key WHERE {where} ORDER BY e.id",
            params).fetchall()
        out = np.empty((sum(n for _, _, n in episodes), d), np.float32)
        names: list[str] = []
        at = 0
        for key, eid, n in episodes:
            idx_blob, blob = db.execute("SELECT idx, vectors FROM segment_embeddings "
                                        "WHERE episode_key=?", (key,)).fetchone()
            idx = np.frombuffer(idx_blob, np.uint32)
            block = f32(blob)
            if idx.size != n or block.size != n * d:
                raise StoreError(f"episode {eid}: stored segment embeddings do not match "
                                 f"their {idx.size} indices of dimension {d}")
            out[at:at + n] = block.reshape(n, d)
            at += n
            names.extend(f"{eid}@{i}" for i in idx.tolist())
        return names, unit_rows(out, in_place=True)
