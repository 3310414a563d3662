"""Content fingerprints of episodes, and a cache that makes a resume cheap.

The content fingerprint (:func:`content_fingerprint`) reads up to 8 MiB of each file. A resume
over a large, unchanged catalogue would read them all again before tagging anything, so
:class:`FingerprintCache` keeps, per episode (its file's path and time range), the file's
size, modification and status-change times (ns), inode and device next to its fingerprint in
``<data_dir>/fingerprints.sqlite``. When all five are unchanged the cached fingerprint is
used (one ``stat`` instead of two reads); otherwise the fingerprint is computed again.

The cache is only a shortcut: when it cannot be opened, read or written (a damaged file, a
read-only data dir, a full disk), the run says so in the log and computes every fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from pathlib import Path

from tvindex.core.records import EpisodeRecord

log = logging.getLogger(__name__)
FINGERPRINT_CHUNK = 1 << 22  # 4 MiB from each end of the file
CACHE_FILE = "fingerprints.sqlite"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS fingerprints (key TEXT PRIMARY KEY, size INTEGER, "
           "mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, device INTEGER, "
           "fingerprint TEXT NOT NULL)")

Signature = tuple[int, int, int, int, int]


def content_fingerprint(episode: EpisodeRecord) -> str:
    """Hash of the file's size, its first and last 4 MiB, and the episode's time range: cheap
    on multi-GB masters, and it changes when a file is replaced or re-encoded."""
    path = Path(episode.media_path)
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(f"{size}|{episode.start_s}|{episode.end_s}|".encode())
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_CHUNK))
        if size > 2 * FINGERPRINT_CHUNK:
            f.seek(size - FINGERPRINT_CHUNK)
            h.update(f.read(FINGERPRINT_CHUNK))
    return h.hexdigest()[:32]


def file_signature(path: str | os.PathLike[str]) -> Signature:
    """What must stay the same for a cached fingerprint to be used (``stat`` follows links,
    as reading the file does)."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def _key(episode: EpisodeRecord) -> str:
    return f"{episode.media_path}\x1f{episode.start_s!r}\x1f{episode.end_s!r}"


class FingerprintCache:
    """Fingerprints by (path, time range), trusted while the file's signature is unchanged.

    ``path``: the cache file (``<data_dir>/fingerprints.sqlite``); None keeps nothing on disk
    (every fingerprint is computed). The file is read on first use. ``computed`` counts the
    fingerprints computed (not taken from the cache); new entries are written by :meth:`save`.
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path is not None else None
        self._rows: dict[str, tuple[Signature, str]] = {}
        self._new: dict[str, tuple[Signature, str]] = {}
        self.computed = 0
        self._loaded = False  # read on first use

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.path is not None:
            try:
                self._load()
            except (sqlite3.Error, OSError) as exc:
                log.warning("fingerprint cache %s not used (%s); every file is hashed",
                            self.path, exc)
                self.path = None
                self._rows.clear()

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str]) -> FingerprintCache:
        return cls(Path(data_dir) / CACHE_FILE)

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        db = sqlite3.connect(self.path, timeout=30)
        db.execute(_SCHEMA)
        return db

    def _load(self) -> None:
        assert self.path is not None
        try:
            db = self._connect()
        except sqlite3.DatabaseError as exc:
            if not isinstance(exc, sqlite3.OperationalError) and self.path.is_file():
                # Not a database (damaged): it is only a cache, so start it afresh.
                log.warning("fingerprint cache %s is damaged (%s); starting it afresh",
                            self.path, exc)
                self.path.unlink()
                db = self._connect()
            else:
                raise
        with contextlib.closing(db):
            for key, *sig, fp in db.execute(
                    "SELECT key, size, mtime_ns, ctime_ns, inode, device, fingerprint "
                    "FROM fingerprints"):
                self._rows[key] = (tuple(sig), fp)  # type: ignore[assignment]

    def fingerprint(self, episode: EpisodeRecord) -> str:
        """The episode's content fingerprint: cached when its file's signature is unchanged,
        computed (and remembered) otherwise. OSError when the file cannot be read."""
        self._ensure_loaded()
        key = _key(episode)
        sig = file_signature(episode.media_path)
        hit = self._rows.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        fp = content_fingerprint(episode)
        self.computed += 1
        if file_signature(episode.media_path) == sig:  # not changed while it was read
            self._rows[key] = self._new[key] = (sig, fp)
        return fp

    def save(self) -> None:
        """Write the new entries (one transaction). A failure is logged, never raised."""
        if self.path is None or not self._new:
            self._new.clear()
            return
        rows = [(k, *sig, fp) for k, (sig, fp) in self._new.items()]
        try:
            with contextlib.closing(self._connect()) as db, db:
                db.executemany("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?, ?, ?, ?, ?)",
                               rows)
        except (sqlite3.Error, OSError) as exc:
            log.warning("fingerprint cache %s not updated (%s); the next run hashes those "
                        "files again", self.path, exc)
        self._new.clear()
