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

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from search.backends.sqlite import integrity
from tvindex.core.store import CatalogueCorrupt, NotFound, StoreError

SCHEMA_VERSION = 5  # == max(MIGRATIONS)
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
    # Reserved so that work in progress on several features never collides on a number;
    # each is filled by its feature (an empty migration only moves the version on).
    # timecodes (issue 15; tvindex.core.timecode): per episode, the frame rate as text
    # ("25", "30000/1001"), the timecode of its first frame, drop-frame labels, variable rate.
    3: """
    ALTER TABLE episodes ADD COLUMN frame_rate TEXT;
    ALTER TABLE episodes ADD COLUMN start_tc TEXT;
    ALTER TABLE episodes ADD COLUMN drop_frame INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE episodes ADD COLUMN vfr INTEGER NOT NULL DEFAULT 0;
    """,
    # words (issue 17): text segments per (episode, source), the source's version/error,
    # and an FTS5 index (rowid = text_segments.id) of the folded words (``surface``) and
    # their Snowball stems in the segment's language (``stems``; search/words.py).
    4: """
    CREATE TABLE word_sources (
        episode_key INTEGER NOT NULL, source TEXT NOT NULL, version TEXT NOT NULL,
        error TEXT, n_segments INTEGER NOT NULL, PRIMARY KEY (episode_key, source)) WITHOUT ROWID;
    CREATE TABLE text_segments (
        id INTEGER PRIMARY KEY, episode_key INTEGER NOT NULL, source TEXT NOT NULL,
        start_s REAL NOT NULL, end_s REAL NOT NULL, language TEXT, confidence REAL,
        text TEXT NOT NULL, words TEXT);
    CREATE INDEX text_segments_episode ON text_segments(episode_key, source, start_s);
    CREATE VIRTUAL TABLE text_fts USING fts5(
        surface, stems, tokenize = 'unicode61 remove_diacritics 2');
    """,
    # genres (issue 19; search/backends/sqlite/genres.py): catalogue genres as rows
    # (predicted 0, split on ';' here for an existing catalogue, by the writer afterwards)
    # and predicted genres (predicted 1, with the model's probability) per programme and
    # episode. No ';' inside a statement (the runner splits on it): char(59) is ';'.
    5: """
    CREATE TABLE programme_genres (
        programme_key INTEGER NOT NULL, genre TEXT NOT NULL, predicted INTEGER NOT NULL,
        score REAL NOT NULL, PRIMARY KEY (programme_key, predicted, genre)) WITHOUT ROWID;
    CREATE INDEX programme_genres_genre ON programme_genres(genre, predicted);
    CREATE TABLE episode_genres (
        episode_key INTEGER NOT NULL, genre TEXT NOT NULL, predicted INTEGER NOT NULL,
        score REAL NOT NULL, PRIMARY KEY (episode_key, predicted, genre)) WITHOUT ROWID;
    CREATE INDEX episode_genres_genre ON episode_genres(genre, predicted);
    WITH RECURSIVE parts(key, part, rest) AS (
        SELECT key, '', lower(genre) || char(59) FROM programmes
        UNION ALL
        SELECT key, trim(substr(rest, 1, instr(rest, char(59)) - 1)),
               substr(rest, instr(rest, char(59)) + 1) FROM parts WHERE rest <> '')
    INSERT OR IGNORE INTO programme_genres (programme_key, genre, predicted, score)
        SELECT key, part, 0, 1.0 FROM parts WHERE part <> '';
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
    transactions that move the write version on, and lookups by key.

    Opened read-only when the file or its folder cannot be written (see
    ``search.backends.sqlite.integrity``); every write then raises ``CatalogueReadOnly``.
    Checked when opened (cheap), and with ``PRAGMA quick_check`` before the session's first
    write and whenever SQLite meets a damaged page: a damaged file is ``CatalogueCorrupt``."""

    path: Path
    busy_timeout_s: float
    read_only: bool = False
    # A thorough check runs again for ``check()`` only when the file changed since the last
    # one passed, and at most this often (the web server's health answer calls it).
    THOROUGH_EVERY_S = 60.0

    def _open(self, path: str | Path, busy_timeout_s: float) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._label_cache: tuple[int, dict[int, tuple[str, int, str]]] | None = None
        self._verified = False  # quick_check passed in this session (before its first write)
        self._damage: CatalogueCorrupt | None = None
        self._thorough_at: tuple[object, float] | None = None
        integrity.prepare_folder(self.path)
        if not self.path.exists():
            if not os.access(self.path.parent, os.W_OK):
                raise StoreError(
                    f"{self.path}: no catalogue here, and {self.path.parent} is not writable; "
                    "index into a writable data directory (--data-dir or paths.data_dir)")
            try:
                integrity.create_catalogue(self.path, self._initialise)
            except sqlite3.Error as exc:
                raise self._store_error(exc) from exc
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create the catalogue "
                                 f"({exc.strerror or exc}); free some space or choose another "
                                 "data directory (--data-dir or paths.data_dir)") from None
            self._verified = True
        integrity.check_header(self.path)
        self._uri, self.read_only_reason = integrity.open_mode(self.path)
        self.read_only = self.read_only_reason is not None
        try:
            self._migrate()
        except sqlite3.Error as exc:
            self.close()
            raise self._store_error(exc) from exc
        except BaseException:
            self.close()
            raise

    # --- connections ---------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        """One connection per thread (the web server is threaded)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, timeout=self.busy_timeout_s,
                                   isolation_level=None, check_same_thread=False)
            try:
                if not self.read_only:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA cache_size=-65536")
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise integrity.read_only(self.path, self.read_only_reason or "")
        if self._damage is not None:
            raise self._damage
        if not self._verified:  # never write into a damaged file
            self._verify()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            # Every write moves the write version on: in-memory caches built at an older
            # one (the shot columns), in this process or another, know to rebuild.
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = ?",
                       (WRITE_VERSION_KEY,))
        except BaseException:
            self._rollback(db)
            raise
        else:
            try:
                db.execute("COMMIT")
            except BaseException:
                self._rollback(db)
                raise

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        # After some errors (a full disk, I/O) SQLite has already rolled back.
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _initialise(self, db: sqlite3.Connection, version: int = 0) -> None:
        """Create ``meta`` and migrate from ``version`` to ``SCHEMA_VERSION`` (in the caller's
        transaction)."""
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        for v in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[v].split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                   (str(SCHEMA_VERSION),))
        db.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')", (WRITE_VERSION_KEY,))

    def _migrate(self) -> None:
        version = integrity.check_tables(self.db, self.path, MIGRATIONS)
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version} is newer than this "
                             f"tvindex ({SCHEMA_VERSION}); upgrade tvindex")
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            raise integrity.read_only(
                self.path, f"{self.read_only_reason}, and its schema version "
                f"{version or 0} must be migrated to {SCHEMA_VERSION}: open it once from a "
                "writable data directory (e.g. tvindex status)")
        with self._tx() as db:  # verifies the file first
            again = integrity.check_tables(db, self.path, MIGRATIONS)  # another process?
            if again != SCHEMA_VERSION:
                self._initialise(db, again or 0)

    # --- integrity -----------------------------------------------------------------------
    def _problems(self) -> list[str]:
        return integrity.quick_check(self.db)

    def _verify(self) -> None:
        problems = self._problems()
        if problems:
            self._damage = integrity.corrupt(self.path, "; ".join(problems[:2]))
            raise self._damage
        self._verified = True

    def _store_error(self, exc: sqlite3.Error) -> BaseException:
        """The store's error for what SQLite raised (see ``integrity.store_error``); a
        damaged file is remembered, so ``check()`` (the web server's health) reports it."""
        err = integrity.store_error(exc, self.path, self.busy_timeout_s, self._problems)
        if isinstance(err, CatalogueCorrupt):
            self._damage = err
        return err

    def _signature(self) -> object:
        out = []
        for p in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                st = p.stat()
                out.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append(None)
        return tuple(out)

    def check(self, thorough: bool = False) -> None:
        """Cheap: the file is still a SQLite database with our tables (and no query met a
        damaged page). ``thorough``: ``PRAGMA quick_check`` too. Without ``thorough``, the
        quick check still runs when the file changed since it last passed, at most every
        ``THOROUGH_EVERY_S`` seconds, so a long-running server notices damage."""
        if self._damage is not None:
            raise self._damage
        try:
            integrity.check_header(self.path)
            integrity.check_tables(self.db, self.path, MIGRATIONS)
            now = time.monotonic()
            signature = self._signature()
            due = self._thorough_at is None or (
                self._thorough_at[0] != signature
                and now - self._thorough_at[1] >= self.THOROUGH_EVERY_S)
            if thorough or due:
                self._verify()
                self._thorough_at = (signature, now)
        except sqlite3.Error as exc:
            raise self._store_error(exc) from exc
        except CatalogueCorrupt as exc:
            self._damage = exc
            raise

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
