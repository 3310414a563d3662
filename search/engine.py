"""The query engine's front door: text -> parsed -> resolved against the catalogue -> ranked.

The CLI and the web layer call :func:`run_search`; they never talk to a backend's query code.
"""

from __future__ import annotations

from search.query import ResolvedQuery, parse_query, resolve_query
from tvindex.core.records import LEVELS, SearchPage
from tvindex.core.store import CatalogueStore, StoreError

MAX_LIMIT = 500


class StoreVocabulary:
    """Adapts a store to the resolver's vocabulary protocol."""

    def __init__(self, store: CatalogueStore) -> None:
        self.store = store

    def label_sets(self) -> dict[str, list[tuple[int, str]]]:
        return self.store.vocabulary_label_sets()

    def programme_titles(self) -> list[tuple[str, str]]:
        return self.store.programme_titles()

    def cache_key(self) -> object:
        """Changes whenever labels or programme titles change (None: the store can't tell)."""
        version = self.store.vocabulary_version()
        return None if version is None else (id(self.store), version)


def resolve(store: CatalogueStore, text: str) -> ResolvedQuery:
    """Parse and resolve query text; raises ``search.query.QueryError`` with a helpful message."""
    return resolve_query(parse_query(text), StoreVocabulary(store))


def run_search(store: CatalogueStore, text: str, level: str = "shot", limit: int = 20,
               offset: int = 0) -> SearchPage:
    if level not in LEVELS:
        raise StoreError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise StoreError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise StoreError(f"offset must be >= 0, got {offset}")
    return store.search(resolve(store, text), level, limit, offset)  # type: ignore[arg-type]
