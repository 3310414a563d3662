"""Opening the catalogue's file safely, and telling a damaged one from a healthy one.

- **How to open** (:func:`open_mode`): read-write when the file and its folder are writable;
  otherwise read-only (``mode=ro``), and ``immutable=1`` as well when SQLite could not create
  the ``-wal``/``-shm`` files a WAL database needs beside it (an unwritable folder without
  them: a read-only mount, a replica). A missing file is created whole
  (:func:`create_catalogue`: built under a temporary name, then linked into place), so a
  ``catalogue.sqlite`` of 0 bytes is never one of ours.
- **Cheap check, always** (:func:`check_header`, :func:`check_tables`): the file starts with
  SQLite's magic, its schema can be read, ``meta`` names our schema version and the tables of
  that version are there.
- **Thorough check** (:func:`quick_check`): ``PRAGMA quick_check``, run by
  ``tvindex status --check``, before a session's first write, and whenever SQLite reports a
  damaged page (``database disk image is malformed``) or a constraint fails.
- **Errors** (:func:`store_error`): what SQLite raises, as the store's own errors with a
  message that says what to do.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from tvindex.core.store import CatalogueCorrupt, CatalogueReadOnly, StoreError, StoreUnavailable

SQLITE_MAGIC = b"SQLite format 3\x00"
# SQLite's primary result codes (the low byte of ``sqlite_errorcode``).
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR = 5, 6, 8, 10
SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 11, 13, 14, 26
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
WHAT_TO_DO = ("restore it from a backup, or re-index into a new data directory "
              "(--data-dir or paths.data_dir)")


def corrupt(path: Path, detail: str) -> CatalogueCorrupt:
    return CatalogueCorrupt(f"{path}: the catalogue is damaged ({detail}); {WHAT_TO_DO}")


def read_only(path: Path, why: str) -> CatalogueReadOnly:
    return CatalogueReadOnly(
        f"{path}: the catalogue is read-only ({why}); status, search, labels, similar and "
        "serve can read it, but index and vectors sync/rebuild need a writable data directory")


def _writable(path: Path) -> bool:
    # access(2) also answers EROFS on a read-only mount and EPERM on an immutable file, for
    # root too (whom permission bits do not stop).
    return os.access(path, os.W_OK)


def prepare_folder(path: Path) -> None:
    """Make sure the catalogue's folder exists (creating it if needed), or say why it cannot."""
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"{folder}: the data directory is a file, not a folder; point "
                         "paths.data_dir (--data-dir) at a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            raise StoreError(f"{folder}: cannot create the data directory (a part of its path "
                             "is a file); point paths.data_dir (--data-dir) at a folder") from None
        raise StoreError(f"{folder}: cannot create the data directory "
                         f"({exc.strerror or exc}); create it, or choose another "
                         "(--data-dir or paths.data_dir)") from None


def open_mode(path: Path) -> tuple[str, str | None]:
    """``(uri, why)``: how to open an existing catalogue file; ``why`` is None when it is
    writable, else the reason it is opened read-only."""
    folder = path.parent
    uri = "file:" + quote(str(path.absolute()))
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    if not os.access(path, os.R_OK):
        raise StoreError(f"{path}: the catalogue cannot be read (permission denied); check its "
                         "owner and permissions")
    side_files_ok = all(not p.exists() or _writable(p) for p in (wal, shm))
    if _writable(path) and _writable(folder) and side_files_ok:
        return uri, None
    why = ("its folder is not writable" if not _writable(folder)
           else "the file is not writable" if not _writable(path)
           else "its -wal/-shm files are not writable")
    if not _writable(folder) and not (wal.exists() and shm.exists()):
        # SQLite could not create the -wal/-shm files: read the file as it is, unlocked.
        return f"{uri}?mode=ro&immutable=1", why
    return f"{uri}?mode=ro", why


def check_header(path: Path) -> None:
    """A file that is not a SQLite database (0 bytes, truncated, foreign) is damaged."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the catalogue ({exc.strerror or exc})") from None
    if not head:
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            return  # a new WAL database whose first pages are still in its -wal file
        raise corrupt(path, "an empty file of 0 bytes, not a catalogue")
    if head != SQLITE_MAGIC:
        raise corrupt(path, "not a SQLite database")


def expected_tables(migrations: dict[int, str], version: int) -> set[str]:
    names = {"meta"}
    for v in range(1, version + 1):
        names |= set(re.findall(r"CREATE (?:VIRTUAL )?TABLE (\w+)", migrations[v]))
    return names


def check_tables(db: sqlite3.Connection, path: Path, migrations: dict[int, str]) -> int | None:
    """The schema version of the file (None: an empty database, nothing in it yet), after
    checking that our tables are there. Raises CatalogueCorrupt for a file that is not (or
    no longer) a tvindex catalogue."""
    db.execute("PRAGMA schema_version").fetchone()  # reads (and parses) the whole schema
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return None
    if "meta" not in tables:
        raise corrupt(path, "no meta table: not a tvindex catalogue")
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    try:
        version = int(row[0]) if row else -1
    except (TypeError, ValueError):
        version = -1
    if version < 0:
        raise corrupt(path, "its schema version is missing")
    missing = expected_tables(migrations, min(version, max(migrations))) - tables
    if missing:
        raise corrupt(path, f"tables missing: {', '.join(sorted(missing))}")
    return version


def quick_check(db: sqlite3.Connection, max_problems: int = 5) -> list[str]:
    """``PRAGMA quick_check``: the problems found (empty when the file is sound)."""
    rows = [r[0] for r in db.execute(f"PRAGMA quick_check({int(max_problems)})")]
    if rows == ["ok"]:
        return []
    lines = [ln.strip() for row in rows for ln in str(row).splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("***")][:max_problems] or ["?"]


def create_catalogue(path: Path, initialise: Callable[[sqlite3.Connection], None]) -> None:
    """Create the catalogue whole: built under a temporary name beside it, checkpointed and
    closed, then linked into place (another process that got there first wins). A crash
    leaves at most the temporary file, never a 0-byte or half-made ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    for p in (tmp, *(tmp.with_name(tmp.name + s) for s in ("-wal", "-shm", "-journal"))):
        p.unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            initialise(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()  # checkpoints: everything is in the main file now
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def disk_full(path: Path, margin: int = 256 * 1024) -> bool:
    """True when the file system holding ``path`` has (almost) no space left."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < margin


def store_error(exc: sqlite3.Error, path: Path, busy_timeout_s: float,
                damaged: Callable[[], list[str]]) -> BaseException:
    """The store's error for what SQLite raised (``exc`` itself when it is none of these).
    ``damaged`` runs the thorough check, for errors that may come from a damaged file."""
    code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
    text = str(exc)
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB) or isinstance(exc, sqlite3.IntegrityError):
        try:
            problems = damaged()
        except sqlite3.DatabaseError as again:
            problems = [str(again)]
        if problems:
            return corrupt(path, "; ".join(problems[:2]))
        if isinstance(exc, sqlite3.IntegrityError):
            return exc  # a sound file: a genuine constraint failure
        return corrupt(path, text)
    if code == SQLITE_FULL or (code in (SQLITE_IOERR, SQLITE_CANTOPEN) and disk_full(path)):
        # A full disk also shows as an I/O error (the -shm file cannot grow).
        return StoreError(f"{path}: the disk is full ({text}); free some space and run again "
                          "(the unfinished write was rolled back: nothing was lost)")
    if code == SQLITE_READONLY:
        return read_only(path, text)
    if code == SQLITE_IOERR:
        return StoreError(f"{path}: disk I/O error on the catalogue "
                          f"({getattr(exc, 'sqlite_errorname', text)}); check the disk (free "
                          "space, the system log) and run again (the unfinished write was "
                          "rolled back)")
    if code == SQLITE_CANTOPEN:
        return StoreError(f"{path}: cannot open the catalogue ({text}); check that the data "
                          "directory exists and that its files are readable and writable")
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return StoreUnavailable(f"{path}: the catalogue stayed locked by another process for "
                                f"more than {busy_timeout_s:g} s; try again")
    return exc
