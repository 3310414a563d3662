"""Writing the SQLite catalogue: programmes and episodes, label sets, an episode's tags (one
transaction: its segments, postings, vectors, kept labels and embeddings, then its
programme's aggregates recomputed from its episodes), failures, removals and re-index
requests. What is written is derived once for both backends (``search.backends.derive``)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence

import numpy as np

from search.backends.derive import (
    embedding_frames,
    episode_embeddings,
    episode_frames,
    keep_mask,
    kept_labels,
    programme_stats,
    segment_frames,
    segment_top,
)
from search.backends.sqlite.genres import sync_programme_genres
from search.backends.sqlite.schema import SqliteBase, f32
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, LabelStats, ProgrammeRecord
from tvindex.core.store import StoreError
from tvindex.core.timecode import EpisodeClock, format_rate


def clock_columns(clock: EpisodeClock | None) -> tuple[str | None, str | None, int, int]:
    """``frame_rate, start_tc, drop_frame, vfr`` of an episode (migration 3)."""
    if clock is None:
        return None, None, 0, 0
    return format_rate(clock.frame_rate), clock.start_tc, int(clock.drop_frame), int(clock.vfr)


class SqliteWriter(SqliteBase):
    """The :class:`tvindex.core.store.CatalogueWriter` half of ``SqliteStore``."""

    min_score: float
    top_k: int

    def upsert_catalogue(self, programmes: Sequence[ProgrammeRecord],
                         episodes: Sequence[EpisodeRecord]) -> None:
        with self._tx() as db:
            for p in programmes:
                db.execute(
                    "INSERT INTO programmes (id, title, description, genre) VALUES (?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET title=excluded.title, "
                    "description=excluded.description, genre=excluded.genre",
                    (p.id, p.title, p.description, p.genre))
                sync_programme_genres(db, p.id, p.genre)  # genre rows: sqlite/genres.py
            for e in episodes:
                pk = db.execute("SELECT key FROM programmes WHERE id=?",
                                (e.programme_id,)).fetchone()
                if pk is None:
                    raise StoreError(f"episode {e.id}: unknown programme {e.programme_id!r}")
                db.execute(
                    "INSERT INTO episodes (id, programme_key, title, media_path, air_date, "
                    "description, start_s, end_s) VALUES (?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET programme_key=excluded.programme_key, "
                    "title=excluded.title, media_path=excluded.media_path, "
                    "air_date=excluded.air_date, description=excluded.description, "
                    "start_s=excluded.start_s, end_s=excluded.end_s",
                    (e.id, pk[0], e.title, e.media_path,
                     e.air_date.isoformat() if e.air_date else None, e.description,
                     e.start_s, e.end_s))

    def register_label_sets(self, label_sets: Sequence[LabelSet]) -> None:
        with self._tx() as db:
            for ls in label_sets:
                row = db.execute("SELECT fingerprint FROM label_sets WHERE name=?",
                                 (ls.name,)).fetchone()
                if row is not None:
                    if row[0] != ls.fingerprint():
                        raise StoreError(
                            f"label set {ls.name!r} in {self.path} has different labels from the "
                            "tagger's; index into a new data directory (paths.data_dir)")
                    continue
                cur = db.execute(
                    "INSERT INTO label_sets (name, activation, fingerprint, size) VALUES (?,?,?,?)",
                    (ls.name, ls.activation, ls.fingerprint(), len(ls)))
                db.executemany("INSERT INTO labels (set_key, idx, name) VALUES (?,?,?)",
                               [(cur.lastrowid, i, n) for i, n in enumerate(ls.labels)])
        self._label_cache = None

    def _delete_episode_tags(self, db: sqlite3.Connection, key: int) -> None:
        for table in ("segments", "segment_postings", "episode_vectors", "episode_labels",
                      "episode_embeddings", "segment_embeddings"):
            db.execute(f"DELETE FROM {table} WHERE episode_key=?", (key,))

    def write_episode(self, tags: EpisodeTags) -> None:
        with self._tx() as db:
            key, prog_key = self._episode_key(db, tags.episode_id)
            sets = self._set_keys(db)
            missing = set(tags.stats) - set(sets)
            if missing:
                raise StoreError(f"label sets not registered: {sorted(missing)}")
            embedded = episode_embeddings(tags)
            self._delete_episode_tags(db, key)
            if embedded is not None:
                vector, segs = embedded
                db.execute("INSERT INTO episode_embeddings VALUES (?,?,?,?,?,?)",
                           (key, tags.embedding_model, vector.size, embedding_frames(tags),
                            self.write_version(db), vector.tobytes()))
                if segs:
                    db.execute("INSERT INTO segment_embeddings VALUES (?,?,?)",
                               (key, np.asarray([i for i, _ in segs], np.uint32).tobytes(),
                                np.stack([v for _, v in segs]).tobytes()))
            db.executemany("INSERT INTO segments VALUES (?,?,?,?,?,?,?,?)", [
                (key, seg.index, seg.start_s, seg.end_s, seg.time_s, segment_frames(seg),
                 seg.thumbnail or None, json.dumps(segment_top(seg), separators=(",", ":")))
                for seg in tags.segments])
            for name, st in tags.stats.items():
                set_key, first_id = sets[name]
                db.execute("INSERT INTO episode_vectors VALUES (?,?,?,?,?)",
                           (key, set_key, st.n_frames, st.score.astype(np.float32).tobytes(),
                            st.coverage.astype(np.float32).tobytes()))
                shots_present = self._write_postings(db, key, tags, name, first_id)
                db.executemany("INSERT INTO episode_labels VALUES (?,?,?,?,?)", [
                    (lid, key, score, cov, int(shots_present[i]))
                    for lid, _, i, score, cov in kept_labels(
                        {name: st}, {name: first_id}, self.min_score, self.top_k)])
            db.execute(
                "UPDATE episodes SET status='indexed', fingerprint=?, config_version=?, "
                "error=NULL, indexed_at=?, duration_s=?, n_frames=?, n_segments=?, sampling=?, "
                "frame_rate=?, start_tc=?, drop_frame=?, vfr=? WHERE key=?",
                (tags.fingerprint, tags.config_version,
                 dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), tags.duration_s,
                 episode_frames(tags.stats), len(tags.segments), tags.sampling,
                 *clock_columns(tags.clock), key))
            self._refresh_programme(db, prog_key, sets)

    def _write_postings(self, db: sqlite3.Connection, key: int, tags: EpisodeTags, name: str,
                        first_id: int) -> np.ndarray:
        """For every label of a set, the segments that keep it (one row per label); returns
        per label how many of those segments some frame reached (coverage > 0)."""
        n_labels = len(tags.stats[name].score)
        shots_present = np.zeros(n_labels, np.int64)
        if not tags.segments:
            return shots_present
        scores = np.stack([s.stats[name].score for s in tags.segments])  # [S, n]
        covers = np.stack([s.stats[name].coverage for s in tags.segments])
        keep = np.stack([keep_mask(s.stats[name], self.min_score, self.top_k)
                         for s in tags.segments])
        idx = np.asarray([s.index for s in tags.segments], np.uint32)
        rows = []
        for label in np.flatnonzero(keep.any(axis=0)):
            sel = keep[:, label]
            shots_present[label] = int((covers[sel, label] > 0).sum())
            rows.append((first_id + int(label), key, idx[sel].tobytes(),
                         scores[sel, label].astype(np.float32).tobytes(),
                         covers[sel, label].astype(np.float32).tobytes()))
        db.executemany("INSERT INTO segment_postings VALUES (?,?,?,?,?)", rows)
        return shots_present

    def _refresh_programme(self, db: sqlite3.Connection, prog_key: int,
                           sets: dict[str, tuple[int, int]]) -> None:
        """Recompute a programme's aggregates exactly from its indexed episodes' vectors."""
        db.execute("DELETE FROM programme_vectors WHERE programme_key=?", (prog_key,))
        db.execute("DELETE FROM programme_labels WHERE programme_key=?", (prog_key,))
        parts: list[tuple[str, LabelStats]] = []
        for name, (set_key, _first_id) in sets.items():
            parts += [(name, LabelStats(f32(s), f32(c), n)) for n, s, c in db.execute(
                "SELECT v.n_frames, v.score, v.coverage FROM episode_vectors v "
                "JOIN episodes e ON e.key = v.episode_key "
                "WHERE e.programme_key=? AND v.set_key=? AND e.status='indexed'",
                (prog_key, set_key))]
        stats = programme_stats(parts)
        for name, st in stats.items():
            db.execute("INSERT INTO programme_vectors VALUES (?,?,?,?,?)",
                       (prog_key, sets[name][0], st.n_frames, st.score.tobytes(),
                        st.coverage.tobytes()))
        db.executemany("INSERT INTO programme_labels VALUES (?,?,?,?)", [
            (lid, prog_key, score, cov) for lid, _, _, score, cov in kept_labels(
                stats, {name: first for name, (_, first) in sets.items()}, self.min_score,
                self.top_k)])

    def mark_failed(self, episode_id: str, reason: str) -> None:
        with self._tx() as db:
            key, prog_key = self._episode_key(db, episode_id)
            self._delete_episode_tags(db, key)
            self._delete_words(db, key)  # type: ignore[attr-defined]  # sqlite/words.py
            db.execute("UPDATE episodes SET status='failed', error=?, fingerprint=NULL, "
                       "config_version=NULL, n_segments=NULL, n_frames=NULL WHERE key=?",
                       (reason, key))
            self._refresh_programme(db, prog_key, self._set_keys(db))

    def remove_episode(self, episode_id: str) -> None:
        with self._tx() as db:
            key, prog_key = self._episode_key(db, episode_id)
            self._delete_episode_tags(db, key)
            self._delete_words(db, key)  # type: ignore[attr-defined]  # sqlite/words.py
            db.execute("DELETE FROM episode_genres WHERE episode_key=?", (key,))
            db.execute("DELETE FROM episodes WHERE key=?", (key,))
            self._refresh_programme(db, prog_key, self._set_keys(db))

    def request_reindex(self, episode_id: str) -> None:
        # The indexer skips an episode only when its stored fingerprint matches the media's;
        # clearing it forces the next run to re-index while the old tags keep serving.
        with self._tx() as db:
            key, _ = self._episode_key(db, episode_id)
            db.execute("UPDATE episodes SET fingerprint=NULL WHERE key=?", (key,))
