"""What every request of one application shares: settings, the store and read caches.

It hangs off ``app.extensions["tvindex"]`` (no module-level state), so two applications in
one process (tests) never see each other's catalogue.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

from tvindex.core.store import CatalogueStore
from webui.suggest import Suggester
from webui.vocabulary import CatalogueExamples

if TYPE_CHECKING:
    from search.recommend import Embedder, Recommender


@dataclass
class WebContext:
    settings: Any  # tvindex.settings.Settings
    store: CatalogueStore
    owns_store: bool = False  # opened by create_app, so closed with the app
    suggester: Suggester = field(init=False)
    examples: CatalogueExamples = field(init=False)  # example queries for the pages
    _recommender: Recommender | None = field(init=False, default=None, repr=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)
    # One image embedding at a time: the embedding network's forward pass is not assumed to
    # be thread-safe, and one picture at a time already uses every core.
    embed_lock: threading.Lock = field(init=False, default_factory=threading.Lock, repr=False)
    # Uploaded pictures decoded at once (server.max_concurrent_decodes): a decode holds the
    # picture at full size for a moment, so this bounds what concurrent uploads can take.
    decode_slots: threading.BoundedSemaphore = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.suggester = Suggester(self.store)
        self._attach_visual()
        self.examples = CatalogueExamples(self.store)
        self.decode_slots = threading.BoundedSemaphore(
            int(self.settings.server.max_concurrent_decodes))

    @property
    def max_query_length(self) -> int:
        return int(self.settings.server.max_query_length)

    @property
    def api_key(self) -> str | None:
        return self.settings.server.api_key

    @property
    def max_upload_bytes(self) -> int:
        return int(self.settings.server.max_upload_bytes)

    @property
    def max_upload_pixels(self) -> int:
        return int(self.settings.server.max_upload_pixels)

    def recommender(self) -> Recommender:
        """The application's one recommender, built on first use, so that its caches, its
        vector indexes and the embedding network (loaded on the first image query) serve
        every request."""
        with self._lock:
            if self._recommender is None:
                from search.recommend import Recommender
                from search.vector_catalogue import VectorCatalogue

                self._recommender = Recommender.from_settings(
                    self.store, self.settings.recommend,
                    VectorCatalogue.from_settings(self.store, self.settings),
                    embedder_provider=self.build_embedder)
            return self._recommender

    def build_embedder(self) -> Embedder | None:
        """The embedding tagger alone (``taggers.embedding``; no other tagger's network is
        loaded), for the recommender's first picture query. Its module, and torch, are
        imported only then: serving searches and pages never loads a network."""
        from indexer.embedder import build_embedder

        return build_embedder(self.settings)

    def _attach_visual(self) -> None:
        """Answer visual: terms (search/visual_search.py) from the CLIP index beside the
        store; the text encoder (torch, the CLIP network) is built on the first such term."""
        from search.visual_search import VisualSearch, attach

        def encoder():
            from indexer.embedder import build_text_encoder

            return build_text_encoder(self.settings)

        attach(self.store, VisualSearch.from_settings(self.store, self.settings, encoder))

    def use_recommender(self, recommender: Recommender) -> None:
        """Serve recommendations from this recommender instead (tests, embedders)."""
        with self._lock:
            self._recommender = recommender


def ctx() -> WebContext:
    """The current application's context (inside a request or app context)."""
    return current_app.extensions["tvindex"]
