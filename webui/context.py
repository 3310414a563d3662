"""What every request of one application shares: settings, the store and read caches.

It hangs off ``app.extensions["tvindex"]`` (no module-level state), so two applications in
one process (tests) never see each other's catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app

from search.store import CatalogueStore
from webui.suggest import Suggester


@dataclass
class WebContext:
    settings: Any  # tvindex.settings.Settings
    store: CatalogueStore
    owns_store: bool = False  # opened by create_app, so closed with the app
    suggester: Suggester = field(init=False)

    def __post_init__(self) -> None:
        self.suggester = Suggester(self.store)

    @property
    def max_query_length(self) -> int:
        return int(self.settings.server.max_query_length)

    @property
    def api_key(self) -> str | None:
        return self.settings.server.api_key


def ctx() -> WebContext:
    """The current application's context (inside a request or app context)."""
    return current_app.extensions["tvindex"]
