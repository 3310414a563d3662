"""The scale-out catalogue store: Elasticsearch (official client, 8.x API), with the same
interface and query semantics as the SQLite backend (``search/backends/sqlite``).

Layout: see ``search/backends/elasticsearch/mappings.py`` (four indices behind aliases; label scores as
``rank_features``, kept labels as ``keyword``, exact per-label floats, text with ca/es/en
analyzers). Document ids are deterministic: programme id, episode id, and for shots
``EPISODE@INDEX#GEN`` where GEN is a hash of everything written for the episode (so writing
the same tags twice writes the same documents: idempotent).

**Atomic episode replacement.** Elasticsearch has no multi-document transactions; an episode
is one episode document plus many shot documents. ``write_episode`` therefore:

1. marks the episode ``dirty`` with ``pending_gen = GEN`` (readers now hide every shot of it
   whose generation is not the committed one);
2. bulk-writes the new shots beside the old ones (ids differ by GEN; a failure here leaves the
   old generation visible and the episode dirty);
3. commits by replacing the episode document in one write (status, fingerprint, labels,
   vectors, ``gen = GEN``), conditional on its sequence number;
4. deletes the shots of other generations, clears ``dirty``, and recomputes the programme's
   aggregates (flagged ``stale`` before the commit; conditional write, retried on conflict).

Searches at shot level first read the (few) dirty episodes and exclude their non-committed
shots, then verify every hit's generation against its episode and retry on a race, so a
search never shows a half-written episode or a mix of two generations. A crash after step 3
is repaired by the next ``upsert_catalogue`` (which every indexing run calls): leftover
generations of committed episodes are deleted and stale programmes recomputed. A crash before
step 3 leaves the episode in its previous state (pending, or indexed with the old tags), and
the next run redoes it.

**Ranking** (``query``, run by ``search``): the cluster orders
candidates by n*ln(C) + the log-sum of the documented score, on exact float32 values; the
store fetches hits in that order (``search_after``) until the float32 rounding can no longer
change which hits belong to the requested page, then re-scores them exactly with
``search.ranking.rank``. Scores, evidence and order are the SQLite backend's; ties are broken
by insertion order (programme/episode
``seq``, then shot index), as SQLite's row keys do.

**Embeddings** (mapping version 2, see ``mappings``): each shot document carries its
segment's mean embedding and the model's identity, and the episode document (written by the
same commit) the episode's, so they are replaced, hidden and dropped exactly like the label
fields. Programme embeddings are computed on read from the episodes'.

**Model and mapping changes**: :meth:`EsStore.rebuilding` builds a fresh set of indices while
searches keep reading the current ones, then swaps every alias in one ``_aliases`` call; a
newer ``MAPPING_VERSION`` copies each index (``_reindex``) and swaps its alias on open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search.backends.elasticsearch.client import EsClient
from search.backends.elasticsearch.facets import EsFacets
from search.backends.elasticsearch.genres import EsGenres
from search.backends.elasticsearch.mappings import KINDS, alias
from search.backends.elasticsearch.reader import EsReader
from search.backends.elasticsearch.search import EsSearch
from search.backends.elasticsearch.words import EsWords
from search.backends.elasticsearch.writer import EsWriter
from tvindex.core.store import CatalogueStore
from tvindex.settings import ElasticsearchSettings


class EsStore(EsFacets, EsGenres, EsWords, EsWriter, EsReader, EsSearch, CatalogueStore):
    """The Elasticsearch catalogue: indices and label sets (``indices``), the writer
    (``writer``), the reader (``reader``) and the search (``search``)."""

    backend = "elasticsearch"
    config_section = "elasticsearch"
    supports_facets = True
    single_machine = False  # every machine of a cluster writes to it

    def __init__(self, cfg: ElasticsearchSettings, *, min_score: float = 0.05,
                 top_k: int = 10, es: Any | None = None) -> None:
        self.cfg = cfg
        self.client = EsClient(cfg, es)
        self.es = self.client.es
        self.min_score = min_score
        self.top_k = top_k
        self._idx = {kind: alias(cfg.index_prefix, kind) for kind in KINDS}
        self._slots_cache: list[dict[str, Any]] = []
        self._ensure_indices()

    @classmethod
    def from_config(cls, elasticsearch: ElasticsearchSettings, data_dir: str | Path | None = None,
                    *, min_score: float = 0.05, top_k: int = 10) -> EsStore:
        """From the ``elasticsearch`` settings section (the data directory is not used: the
        catalogue lives in the cluster)."""
        return cls(elasticsearch, min_score=min_score, top_k=top_k)

    def data_subdir(self) -> str:
        # Several catalogues (index prefixes) may share one data directory.
        return f"es-{self.cfg.index_prefix.rstrip('-_.')}"

    def close(self) -> None:
        self.client.close()
