"""The store backends by name, as dotted paths (``module:Class``): this module imports no
backend, so a user of SQLite never imports the Elasticsearch client, and the backends (which
import what they share from ``search.backends.derive``) never import this module.

:func:`open_store` is the composition root's one call: it imports the configured backend on
first use and builds it from its own settings section.
"""

from __future__ import annotations

import importlib
from typing import Any

from tvindex.core.store import CatalogueStore, StoreError

STORE_BACKENDS: dict[str, str] = {
    "sqlite": "search.backends.sqlite.store:SqliteStore",
    "elasticsearch": "search.backends.elasticsearch.store:EsStore",
}


def store_class(backend: str) -> type[CatalogueStore]:
    """The class registered for ``backend`` (imported now)."""
    path = STORE_BACKENDS.get(backend)
    if path is None:
        raise StoreError(f"catalogue.backend {backend!r} is not available")
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def open_store(settings: Any) -> CatalogueStore:
    """Build the configured backend (``catalogue.backend``) from its own settings section
    (the class names it: ``config_section``), the data directory and the keep rule."""
    cls: Any = store_class(settings.catalogue.backend)
    return cls.from_config(getattr(settings, cls.config_section), settings.paths.data_dir,
                           min_score=settings.aggregation.store_min_score,
                           top_k=settings.aggregation.store_top_k)
