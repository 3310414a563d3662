"""The SQLite catalogue's file: its schema and migrations, per-thread connections in WAL
mode (readers never wait for the indexer), transactions, and the key lookups the writer,
the reader and the search share.

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
  it in its programme, and ``seq`` (the store's write version at its write: the most recent one
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

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tvindex.core.store import NotFound, StoreError

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


def f32(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


# The store-wide write counter's key in ``meta``. It is named "generation" on disk (kept so
# that existing catalogues open); in code it is the *write version*, not to be confused with
# an Elasticsearch episode's committed generation.
WRITE_VERSION_KEY = "generation"


class SqliteBase:
    """One catalogue file: connections (one per thread: the web server is threaded),
    transactions that move the write version on, and lookups by key."""

    path: Path
    busy_timeout_s: float

    def _open(self, path: str | Path, busy_timeout_s: float) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._label_cache: tuple[int, dict[int, tuple[str, int, str]]] | None = None
        self._migrate()

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
            # Every write moves the write version on: in-memory caches built at an older
            # one (the shot columns), in this process or another, know to rebuild.
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ?",
                       (WRITE_VERSION_KEY,))
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
            db.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')", (WRITE_VERSION_KEY,))

    def write_version(self, db: sqlite3.Connection | None = None) -> int:
        """Counts committed writes (in any process): the state in-memory caches are of."""
        return int((db or self.db).execute("SELECT value FROM meta WHERE key=?",
                                           (WRITE_VERSION_KEY,)).fetchone()[0])

    def schema_version(self) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key='schema_version'")
                   .fetchone()[0])

    # --- keys ----------------------------------------------------------------------------
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

    def _labels_by_id(self) -> dict[int, tuple[str, int, str]]:
        """label id -> (label set, index in set, name), cached until label sets change."""
        n = self.db.execute("SELECT count(*) FROM labels").fetchone()[0]
        if self._label_cache is None or self._label_cache[0] != n:
            rows = self.db.execute(
                "SELECT l.id, s.name, l.idx, l.name FROM labels l "
                "JOIN label_sets s ON s.key = l.set_key").fetchall()
            self._label_cache = (n, {r[0]: (r[1], r[2], r[3]) for r in rows})
        return self._label_cache[1]
