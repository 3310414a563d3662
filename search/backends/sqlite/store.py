"""The embedded catalogue store: SQLite in WAL mode (readers never wait for the indexer).

One class, :class:`SqliteStore`, of four parts: the file, its schema and connections
(``schema``), the writer (``writer``), the reader (``reader``) and the search (``search``).
The layout is described in ``search/backends/sqlite/schema.py``; how the file is opened
(read-write or read-only) and checked, in ``search/backends/sqlite/integrity.py``. Every
public method raises the store's errors (``StoreError`` and its kinds), never ``sqlite3``'s.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.backends.sqlite.facets import SqliteFacets
from search.backends.sqlite.genres import SqliteGenres
from search.backends.sqlite.reader import SqliteReader
from search.backends.sqlite.schema import MIGRATIONS, SCHEMA_VERSION, SHOT_BITS
from search.backends.sqlite.search import SqliteSearch
from search.backends.sqlite.shot_columns import ShotColumnCache
from search.backends.sqlite.word_search import SqliteWordSearch
from search.backends.sqlite.words import SqliteWords
from search.backends.sqlite.writer import SqliteWriter
from tvindex.core.store import CatalogueStore

DEFAULT_FILE = "catalogue.sqlite"


class SqliteStore(SqliteFacets, SqliteGenres, SqliteWords, SqliteWordSearch, SqliteWriter, SqliteReader,
                  SqliteSearch, CatalogueStore):
    backend = "sqlite"
    config_section = "catalogue"

    def __init__(self, path: str | Path, *, min_score: float = 0.05, top_k: int = 10,
                 busy_timeout_s: float = 30.0) -> None:
        self.min_score = min_score
        self.top_k = top_k
        self._open(path, busy_timeout_s)
        self._shot_columns = ShotColumnCache(
            self._all_shot_ids, lambda label: self._postings("shot", label, None))

    @classmethod
    def from_config(cls, catalogue: Any, data_dir: str | Path, *, min_score: float = 0.05,
                    top_k: int = 10) -> SqliteStore:
        """From the ``catalogue`` settings section: its ``sqlite_path``, else
        ``<data_dir>/catalogue.sqlite``."""
        return cls(catalogue.sqlite_path or Path(data_dir) / DEFAULT_FILE,
                   min_score=min_score, top_k=top_k)


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise self._store_error(exc) from exc

    call.__guarded__ = True  # type: ignore[attr-defined]
    return call


def _guard_public_methods(cls: type) -> None:
    """Wrap every public method the SQLite parts define, so what SQLite raises (a damaged
    page, a full disk, a read-only file) reaches callers as the store's own errors."""
    names = {name for klass in cls.__mro__ if klass.__module__.startswith(__package__ or "")
             for name, value in vars(klass).items()
             if not name.startswith("_") and inspect.isfunction(value)}
    for name in sorted(names - {"close", "from_config"}):
        method = getattr(cls, name)
        if not getattr(method, "__guarded__", False):
            setattr(cls, name, _guarded(method))


_guard_public_methods(SqliteStore)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SHOT_BITS", "SqliteStore"]
