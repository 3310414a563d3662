"""The embedded catalogue store: SQLite in WAL mode (readers never wait for the indexer).

Layout (schema version in ``meta``; forward migrations in ``MIGRATIONS``):
- programmes, episodes (status, fingerprint, config version, failure reason), label_sets,
  labels (one global integer id per label);
- segments: one row per shot/frame with times, thumbnail (JPEG) and its top labels (JSON);
- segment_postings: per (label, episode), the segments that carry the label, as packed arrays
  (uint32 segment indices, float32 scores and coverages). Grouping postings by episode makes
  replacing an episode one DELETE, and reading a label's postings over a million shots a few
  thousand rows;
- episode_vectors / programme_vectors: dense float32 score and coverage vectors per label set
  (programme aggregates are recomputed exactly from their episodes' vectors);
- episode_labels / programme_labels: the kept labels as rows, for ranking at those levels;
- episode_embeddings (schema 2): per episode, the mean of its frames' unit embeddings [D]
  float32 (not renormalised), the embedding model's identity, D, the frame count that weighs
  it in its programme, and ``seq`` (the store generation of its write: the most recent one
  names ``embedding_model()``);
- segment_embeddings (schema 2): per episode, all its segments' mean embeddings as one packed
  blob ([S, D] float32, rows in segment order) with their segment indices (uint32), like the
  postings: replacing an episode is one DELETE, and reading a million shots' embeddings a few
  thousand rows copied into one preallocated array.
Programme embeddings are not stored: ``embeddings("programme")`` computes the frame-weighted
mean over the indexed episodes' rows of the current model on read (a few thousand rows), so
they can never be stale, whatever model each episode was embedded with.
Every write of one episode happens in one transaction. User text only ever reaches SQL as
bound parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from search.ranking import Postings, evidence, rank, rank_columns
from search.shot_columns import ShotColumnCache
from search.store import embedding_frames, episode_embeddings, keep_mask, no_embeddings
from tvindex.core.labels import LabelSet
from tvindex.core.records import (
    EpisodeRecord,
    EpisodeState,
    EpisodeTags,
    Hit,
    LabelInfo,
    LabelStats,
    Level,
    ProgrammeRecord,
    SearchPage,
    shot_id,
)
from tvindex.core.stats import combine
from tvindex.core.store import CatalogueStore, NotFound, StoreError
from tvindex.core.vectors import unit_rows

SCHEMA_VERSION = 2
SHOT_BITS = 24  # shot id = episode_key << SHOT_BITS | segment index

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE programmes (
        key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '', genre TEXT NOT NULL DEFAULT '');
    CREATE TABLE episodes (
        key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
        programme_key INTEGER NOT NULL REFERENCES programmes(key),
        title TEXT NOT NULL, media_path TEXT NOT NULL, air_date TEXT,
        description TEXT NOT NULL DEFAULT '', start_s REAL, end_s REAL,
        status TEXT NOT NULL DEFAULT 'pending', fingerprint TEXT, config_version TEXT,
        error TEXT, indexed_at TEXT, duration_s REAL, n_frames INTEGER, n_segments INTEGER,
        sampling TEXT);
    CREATE INDEX episodes_programme ON episodes(programme_key);
    CREATE TABLE label_sets (
        key INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, activation TEXT NOT NULL,
        fingerprint TEXT NOT NULL, size INTEGER NOT NULL);
    CREATE TABLE labels (
        id INTEGER PRIMARY KEY, set_key INTEGER NOT NULL REFERENCES label_sets(key),
        idx INTEGER NOT NULL, name TEXT NOT NULL, UNIQUE (set_key, idx));
    CREATE TABLE segments (
        episode_key INTEGER NOT NULL, idx INTEGER NOT NULL, start_s REAL NOT NULL,
        end_s REAL NOT NULL, time_s REAL NOT NULL, n_frames INTEGER NOT NULL,
        thumbnail BLOB, top_labels TEXT NOT NULL, PRIMARY KEY (episode_key, idx)) WITHOUT ROWID;
    CREATE TABLE segment_postings (
        label_id INTEGER NOT NULL, episode_key INTEGER NOT NULL, idx BLOB NOT NULL,
        score BLOB NOT NULL, coverage BLOB NOT NULL,
        PRIMARY KEY (label_id, episode_key)) WITHOUT ROWID;
    CREATE INDEX segment_postings_episode ON segment_postings(episode_key);
    CREATE TABLE episode_vectors (
        episode_key INTEGER NOT NULL, set_key INTEGER NOT NULL, n_frames INTEGER NOT NULL,
        score BLOB NOT NULL, coverage BLOB NOT NULL,
        PRIMARY KEY (episode_key, set_key)) WITHOUT ROWID;
    CREATE TABLE episode_labels (
        label_id INTEGER NOT NULL, episode_key INTEGER NOT NULL, score REAL NOT NULL,
        coverage REAL NOT NULL, shots INTEGER NOT NULL,
        PRIMARY KEY (label_id, episode_key)) WITHOUT ROWID;
    CREATE INDEX episode_labels_episode ON episode_labels(episode_key);
    CREATE TABLE programme_vectors (
        programme_key INTEGER NOT NULL, set_key INTEGER NOT NULL, n_frames INTEGER NOT NULL,
        score BLOB NOT NULL, coverage BLOB NOT NULL,
        PRIMARY KEY (programme_key, set_key)) WITHOUT ROWID;
    CREATE TABLE programme_labels (
        label_id INTEGER NOT NULL, programme_key INTEGER NOT NULL, score REAL NOT NULL,
        coverage REAL NOT NULL, PRIMARY KEY (label_id, programme_key)) WITHOUT ROWID;
    CREATE INDEX programme_labels_programme ON programme_labels(programme_key);
    """,
    2: """
    CREATE TABLE episode_embeddings (
        episode_key INTEGER PRIMARY KEY, model TEXT NOT NULL, dims INTEGER NOT NULL,
        n_frames INTEGER NOT NULL, seq INTEGER NOT NULL, vector BLOB NOT NULL);
    CREATE INDEX episode_embeddings_model ON episode_embeddings(model, seq);
    CREATE TABLE segment_embeddings (
        episode_key INTEGER PRIMARY KEY, idx BLOB NOT NULL, vectors BLOB NOT NULL);
    """,
}


def _f32(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


class SqliteStore(CatalogueStore):
    backend = "sqlite"

    def __init__(self, path: str | Path, *, min_score: float = 0.05, top_k: int = 10,
                 busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.min_score = min_score
        self.top_k = top_k
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._label_cache: tuple[int, dict[int, tuple[str, int, str]]] | None = None
        self._migrate()
        self._shot_columns = ShotColumnCache(self._all_shot_ids,
                                             lambda label: self._postings("shot", label, None))

    @classmethod
    def from_settings(cls, settings: Any) -> SqliteStore:
        cat = settings.catalogue
        path = cat.sqlite_path or Path(settings.paths.data_dir) / "catalogue.sqlite"
        return cls(path, min_score=settings.aggregation.store_min_score,
                   top_k=settings.aggregation.store_top_k)

    # --- connections ---------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        """One connection per thread (the web server is threaded)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA cache_size=-65536")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            # Every write moves the generation on: in-memory caches built at an older one
            # (the shot columns), in this process or another, know to rebuild.
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                       "WHERE key = 'generation'")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {version} is newer than this "
                                 f"tvindex ({SCHEMA_VERSION}); upgrade tvindex")
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[v].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")

    def generation(self) -> int:
        """Counts committed writes (in any process)."""
        return int(self.db.execute("SELECT value FROM meta WHERE key='generation'")
                   .fetchone()[0])

    def schema_version(self) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key='schema_version'")
                   .fetchone()[0])

    # --- writing -------------------------------------------------------------------------
    def upsert_catalogue(self, programmes: Sequence[ProgrammeRecord],
                         episodes: Sequence[EpisodeRecord]) -> None:
        with self._tx() as db:
            for p in programmes:
                db.execute(
                    "INSERT INTO programmes (id, title, description, genre) VALUES (?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET title=excluded.title, "
                    "description=excluded.description, genre=excluded.genre",
                    (p.id, p.title, p.description, p.genre))
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

    def _set_keys(self, db: sqlite3.Connection) -> dict[str, tuple[int, int]]:
        """label set name -> (set key, id of its label 0); label ids are contiguous per set."""
        out = {}
        for name, key in db.execute("SELECT name, key FROM label_sets"):
            first = db.execute("SELECT min(id) FROM labels WHERE set_key=?", (key,)).fetchone()[0]
            out[name] = (key, first)
        return out

    def _episode_key(self, db: sqlite3.Connection, episode_id: str) -> tuple[int, int]:
        row = db.execute("SELECT key, programme_key FROM episodes WHERE id=?",
                         (episode_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown episode {episode_id!r}")
        return row[0], row[1]

    def _delete_episode_tags(self, db: sqlite3.Connection, key: int) -> None:
        for table in ("segments", "segment_postings", "episode_vectors", "episode_labels",
                      "episode_embeddings", "segment_embeddings"):
            db.execute(f"DELETE FROM {table} WHERE episode_key=?", (key,))  # noqa: S608

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
                seq = int(db.execute("SELECT value FROM meta WHERE key='generation'")
                          .fetchone()[0])
                db.execute("INSERT INTO episode_embeddings VALUES (?,?,?,?,?,?)",
                           (key, tags.embedding_model, vector.size, embedding_frames(tags),
                            seq, vector.tobytes()))
                if segs:
                    db.execute("INSERT INTO segment_embeddings VALUES (?,?,?)",
                               (key, np.asarray([i for i, _ in segs], np.uint32).tobytes(),
                                np.stack([v for _, v in segs]).tobytes()))
            n_frames = 0
            seg_rows = []
            for seg in tags.segments:
                top = {}
                for name, st in seg.stats.items():
                    order = np.argsort(-st.score, kind="stable")[:5]
                    top[name] = [[int(i), round(float(st.score[i]), 4)] for i in order]
                seg_rows.append((key, seg.index, seg.start_s, seg.end_s, seg.time_s,
                                 next(iter(seg.stats.values())).n_frames if seg.stats else 0,
                                 seg.thumbnail or None, json.dumps(top, separators=(",", ":"))))
            db.executemany("INSERT INTO segments VALUES (?,?,?,?,?,?,?,?)", seg_rows)
            for name, st in tags.stats.items():
                set_key, first_id = sets[name]
                n_frames = max(n_frames, st.n_frames)
                db.execute("INSERT INTO episode_vectors VALUES (?,?,?,?,?)",
                           (key, set_key, st.n_frames, st.score.astype(np.float32).tobytes(),
                            st.coverage.astype(np.float32).tobytes()))
                # Postings: for every label, the segments that keep it.
                if tags.segments:
                    scores = np.stack([s.stats[name].score for s in tags.segments])  # [S, n]
                    covers = np.stack([s.stats[name].coverage for s in tags.segments])
                    keep = np.stack([keep_mask(s.stats[name], self.min_score, self.top_k)
                                     for s in tags.segments])
                    idx = np.asarray([s.index for s in tags.segments], np.uint32)
                else:
                    keep = np.zeros((0, len(st.score)), bool)
                shots_present = np.zeros(len(st.score), np.int64)
                post_rows = []
                for label in np.flatnonzero(keep.any(axis=0)):
                    rows = keep[:, label]
                    shots_present[label] = int((covers[rows, label] > 0).sum())
                    post_rows.append((first_id + int(label), key, idx[rows].tobytes(),
                                      scores[rows, label].astype(np.float32).tobytes(),
                                      covers[rows, label].astype(np.float32).tobytes()))
                db.executemany("INSERT INTO segment_postings VALUES (?,?,?,?,?)", post_rows)
                ep_keep = keep_mask(st, self.min_score, self.top_k)
                db.executemany(
                    "INSERT INTO episode_labels VALUES (?,?,?,?,?)",
                    [(first_id + int(i), key, float(st.score[i]), float(st.coverage[i]),
                      int(shots_present[i])) for i in np.flatnonzero(ep_keep)])
            db.execute(
                "UPDATE episodes SET status='indexed', fingerprint=?, config_version=?, "
                "error=NULL, indexed_at=?, duration_s=?, n_frames=?, n_segments=?, sampling=? "
                "WHERE key=?",
                (tags.fingerprint, tags.config_version,
                 dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), tags.duration_s,
                 n_frames, len(tags.segments), tags.sampling, key))
            self._refresh_programme(db, prog_key, sets)

    def _refresh_programme(self, db: sqlite3.Connection, prog_key: int,
                           sets: dict[str, tuple[int, int]]) -> None:
        """Recompute a programme's aggregates exactly from its indexed episodes' vectors."""
        db.execute("DELETE FROM programme_vectors WHERE programme_key=?", (prog_key,))
        db.execute("DELETE FROM programme_labels WHERE programme_key=?", (prog_key,))
        for _name, (set_key, first_id) in sets.items():
            rows = db.execute(
                "SELECT v.n_frames, v.score, v.coverage FROM episode_vectors v "
                "JOIN episodes e ON e.key = v.episode_key "
                "WHERE e.programme_key=? AND v.set_key=? AND e.status='indexed'",
                (prog_key, set_key)).fetchall()
            if not rows:
                continue
            st = combine(LabelStats(_f32(s), _f32(c), n) for n, s, c in rows)
            db.execute("INSERT INTO programme_vectors VALUES (?,?,?,?,?)",
                       (prog_key, set_key, st.n_frames, st.score.tobytes(),
                        st.coverage.tobytes()))
            keep = keep_mask(st, self.min_score, self.top_k)
            db.executemany("INSERT INTO programme_labels VALUES (?,?,?,?)",
                           [(first_id + int(i), prog_key, float(st.score[i]),
                             float(st.coverage[i])) for i in np.flatnonzero(keep)])

    def mark_failed(self, episode_id: str, reason: str) -> None:
        with self._tx() as db:
            key, prog_key = self._episode_key(db, episode_id)
            self._delete_episode_tags(db, key)
            db.execute("UPDATE episodes SET status='failed', error=?, fingerprint=NULL, "
                       "config_version=NULL, n_segments=NULL, n_frames=NULL WHERE key=?",
                       (reason, key))
            self._refresh_programme(db, prog_key, self._set_keys(db))

    def remove_episode(self, episode_id: str) -> None:
        with self._tx() as db:
            key, prog_key = self._episode_key(db, episode_id)
            self._delete_episode_tags(db, key)
            db.execute("DELETE FROM episodes WHERE key=?", (key,))
            self._refresh_programme(db, prog_key, self._set_keys(db))

    def request_reindex(self, episode_id: str) -> None:
        # The indexer skips an episode only when its stored fingerprint matches the media's;
        # clearing it forces the next run to re-index while the old tags keep serving.
        with self._tx() as db:
            key, _ = self._episode_key(db, episode_id)
            db.execute("UPDATE episodes SET fingerprint=NULL WHERE key=?", (key,))

    # --- reading -------------------------------------------------------------------------
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

    def _labels_by_id(self) -> dict[int, tuple[str, int, str]]:
        """label id -> (label set, index in set, name), cached until label sets change."""
        n = self.db.execute("SELECT count(*) FROM labels").fetchone()[0]
        if self._label_cache is None or self._label_cache[0] != n:
            rows = self.db.execute(
                "SELECT l.id, s.name, l.idx, l.name FROM labels l "
                "JOIN label_sets s ON s.key = l.set_key").fetchall()
            self._label_cache = (n, {r[0]: (r[1], r[2], r[3]) for r in rows})
        return self._label_cache[1]

    def vocabulary_version(self) -> object:
        labels = self.db.execute("SELECT count(*), max(id) FROM labels").fetchone()
        titles = self.db.execute("SELECT count(*), group_concat(id || '\x1f' || title, '\x1e') "
                                 "FROM programmes").fetchone()
        return (*labels, titles[0], hash(titles[1]))

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

    def programmes(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT p.id, p.title, p.description, p.genre, count(e.key), "
            "sum(e.status='indexed'), min(e.air_date), max(e.air_date) FROM programmes p "
            "LEFT JOIN episodes e ON e.programme_key = p.key GROUP BY p.key ORDER BY p.title"
        ).fetchall()
        return [{"id": r[0], "title": r[1], "description": r[2], "genre": r[3], "episodes": r[4],
                 "indexed_episodes": int(r[5] or 0), "first_air_date": r[6],
                 "last_air_date": r[7]} for r in rows]

    def _top_labels(self, table: str, key_col: str, key: int, k: int = 10
                    ) -> dict[str, list[dict[str, Any]]]:
        by_id = self._labels_by_id()
        out: dict[str, list[dict[str, Any]]] = {}
        rows = self.db.execute(
            f"SELECT label_id, score, coverage FROM {table} WHERE {key_col}=? "  # noqa: S608
            "ORDER BY score DESC, label_id", (key,)).fetchall()
        for lid, score, cov in rows:
            ls, _, name = by_id[lid]
            bucket = out.setdefault(ls, [])
            if len(bucket) < k:
                bucket.append({"label": name, "score": round(score, 4),
                               "coverage": round(cov, 4)})
        return out

    def programme(self, programme_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT key, id, title, description, genre FROM programmes "
                              "WHERE id=?", (programme_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown programme {programme_id!r}")
        eps = self.db.execute(
            "SELECT id, title, air_date, status, n_segments, duration_s FROM episodes "
            "WHERE programme_key=? ORDER BY air_date, id", (row[0],)).fetchall()
        return {"id": row[1], "title": row[2], "description": row[3], "genre": row[4],
                "episodes": [{"id": e[0], "title": e[1], "air_date": e[2], "status": e[3],
                              "segments": e[4], "duration_s": e[5]} for e in eps],
                "top_labels": self._top_labels("programme_labels", "programme_key", row[0])}

    def episode(self, episode_id: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT e.key, e.id, e.title, e.air_date, e.description, e.media_path, e.start_s, "
            "e.end_s, e.status, e.error, e.duration_s, e.n_frames, e.n_segments, e.sampling, "
            "p.id, p.title, e.fingerprint FROM episodes e "
            "JOIN programmes p ON p.key = e.programme_key WHERE e.id=?", (episode_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown episode {episode_id!r}")
        keys = ("id", "title", "air_date", "description", "media_path", "start_s", "end_s",
                "status", "error", "duration_s", "n_frames", "n_segments", "sampling",
                "programme_id", "programme_title")
        out = dict(zip(keys, row[1:-1]))
        out["reindex_requested"] = row[8] == "indexed" and row[-1] is None
        out["top_labels"] = self._top_labels("episode_labels", "episode_key", row[0])
        return out

    def segments(self, episode_id: str) -> list[dict[str, Any]]:
        key, _ = self._episode_key(self.db, episode_id)
        by_set = {ls.name: ls for ls in self.label_sets()}
        out = []
        for idx, start, end, time_s, n, top in self.db.execute(
                "SELECT idx, start_s, end_s, time_s, n_frames, top_labels FROM segments "
                "WHERE episode_key=? ORDER BY idx", (key,)):
            labels = {name: [{"label": by_set[name].labels[i], "score": s} for i, s in pairs]
                      for name, pairs in json.loads(top).items() if name in by_set}
            out.append({"id": shot_id(episode_id, idx), "index": idx, "start_s": start,
                        "end_s": end, "time_s": time_s, "n_frames": n, "top_labels": labels})
        return out

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
        return [r[0] for r in rows], np.stack([_f32(r[1]) for r in rows])

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
            f"SELECT DISTINCT ee.dims FROM episode_embeddings ee JOIN episodes e "  # noqa: S608
            f"ON e.key = ee.episode_key WHERE {where}", params)]
        if not dims:
            return no_embeddings()
        if len(dims) > 1:
            raise StoreError(f"embedding model {model!r} has rows of {len(dims)} different "
                             f"dimensions {sorted(dims)}; re-index its episodes")
        d = dims[0]
        if level == "episode":
            rows = db.execute(
                f"SELECT e.id, ee.vector FROM episode_embeddings ee JOIN episodes e "  # noqa: S608
                f"ON e.key = ee.episode_key WHERE {where} ORDER BY e.id", params).fetchall()
            out = np.empty((len(rows), d), np.float32)
            for j, (_, blob) in enumerate(rows):
                out[j] = _f32(blob)
            return [r[0] for r in rows], unit_rows(out, in_place=True)
        if level == "programme":
            ids: list[str] = []
            sums: list[np.ndarray] = []
            for pid, n, blob in db.execute(
                    f"SELECT p.id, ee.n_frames, ee.vector FROM episode_embeddings ee "  # noqa: S608
                    f"JOIN episodes e ON e.key = ee.episode_key JOIN programmes p "
                    f"ON p.key = e.programme_key WHERE {where} ORDER BY p.id", params):
                if not ids or ids[-1] != pid:
                    ids.append(pid)
                    sums.append(np.zeros(d, np.float64))
                sums[-1] += n * _f32(blob).astype(np.float64)
            return ids, unit_rows(np.stack(sums).astype(np.float32), in_place=True)
        # Shots: the episodes in id order first (small rows: sorting rows that carry the
        # blobs would copy them all through a temporary b-tree), the count from the blob
        # lengths (kept in the record headers), then every episode's packed block by its
        # key, copied into one preallocated array.
        episodes = db.execute(
            f"SELECT e.key, e.id, length(se.idx) / 4 FROM segment_embeddings se "  # noqa: S608
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
            block = _f32(blob)
            if idx.size != n or block.size != n * d:
                raise StoreError(f"episode {eid}: stored segment embeddings do not match "
                                 f"their {idx.size} indices of dimension {d}")
            out[at:at + n] = block.reshape(n, d)
            at += n
            names.extend(f"{eid}@{i}" for i in idx.tolist())
        return names, unit_rows(out, in_place=True)

    # --- search --------------------------------------------------------------------------
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
            scores = _f32(b"".join(score_blobs))
            if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):
                return ids, scores  # rows by episode, segments in order: already sorted
        else:
            table, col = (("episode_labels", "episode_key") if level == "episode"
                          else ("programme_labels", "programme_key"))
            rows = self.db.execute(f"SELECT {col}, score FROM {table} "  # noqa: S608
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
        ids, cols = self._shot_columns.columns(self.generation(), labels)
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
