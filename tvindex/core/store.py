"""The catalogue store contract: what the indexer writes and what readers (web, search,
recommendations, the report) read. Backends (``search/backends``: SQLite embedded,
Elasticsearch) implement both halves with the same semantics; the indexer only ever sees a
:class:`CatalogueWriter`, readers a :class:`CatalogueReader`.

Ranking semantics shared by every backend (see ``search/ranking.py``): a hit must carry every
required group (a group is an OR of labels; a label is carried when the store kept its score,
see ``keep_mask``); its score is the geometric mean of the matched probabilities and of
(1 - p) for each excluded label: exp(mean(log p_group_best, log(1 - p_excluded))).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from tvindex.core.genres import GenreScore
from tvindex.core.labels import LabelSet
from tvindex.core.records import (
    EpisodeDetail,
    EpisodeRecord,
    EpisodeState,
    EpisodeTags,
    LabelInfo,
    Level,
    ProgrammeDetail,
    ProgrammeRecord,
    ProgrammeSummary,
    SearchPage,
    SegmentView,
)
from tvindex.core.timecode import EpisodeClock
from tvindex.core.words import EpisodeWords, TextSegment


class StoreError(RuntimeError):
    """The store cannot do what was asked (bad id, incompatible data); message says why."""


class NotFound(StoreError):
    pass


class CatalogueCorrupt(StoreError):
    """The catalogue's file is damaged or is not a catalogue (a 0-byte file, a foreign file,
    pages that fail ``PRAGMA quick_check``). Not transient: restore the file from a backup, or
    re-index into a new data directory."""


class CatalogueReadOnly(StoreError):
    """The catalogue can only be read (its file, folder or file system is not writable), and
    something asked to write to it (indexing, a migration, a re-index request)."""


class StoreUnavailable(StoreError):
    """The store could not be reached (or kept refusing) after its bounded retries. Transient:
    the same call may succeed later. The indexer marks the episode failed with this reason (or,
    when even that cannot reach the store, leaves it pending) and goes on."""


class _Closable:
    """A store holds connections: ``close`` them, or use it as a context manager."""

    backend: ClassVar[str] = ""

    def close(self) -> None:  # an optional hook
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CatalogueWriter(_Closable, ABC):
    """What indexing needs: register the catalogue and label sets, write or fail episodes, and
    read back each episode's state (to resume) and the known label sets."""

    single_machine: ClassVar[bool] = True
    """True when only processes of one machine may write it (a file on a local disk): the
    Ray engine refuses such a store on a cluster of several machines."""

    # --- writing -------------------------------------------------------------------------
    @abstractmethod
    def upsert_catalogue(self, programmes: Sequence[ProgrammeRecord],
                         episodes: Sequence[EpisodeRecord]) -> None:
        """Register programmes and episodes (metadata only); new episodes start 'pending'.
        Metadata of existing ones is updated; their tags are kept."""

    @abstractmethod
    def register_label_sets(self, label_sets: Sequence[LabelSet]) -> None:
        """Make label sets known (idempotent). A set whose labels changed is an error."""

    @abstractmethod
    def write_episode(self, tags: EpisodeTags) -> None:
        """Atomically replace everything indexed for the episode with ``tags``, mark it
        indexed, and update its programme's aggregates. All or nothing."""

    @abstractmethod
    def mark_failed(self, episode_id: str, reason: str) -> None:
        """Record a failure with its reason. The episode's previous tags are dropped, so
        search only ever shows episodes whose current media was indexed."""

    @abstractmethod
    def remove_episode(self, episode_id: str) -> None: ...

    @abstractmethod
    def request_reindex(self, episode_id: str) -> None:
        """Make the next indexing run re-index the episode even if its media and
        configuration are unchanged. Its current tags stay searchable until then; the
        episode reports ``reindex_requested: true`` meanwhile. Unknown id: NotFound."""

    @abstractmethod
    def episode_states(self) -> list[EpisodeState]: ...

    @abstractmethod
    def label_sets(self) -> list[LabelSet]: ...

    # --- words (subtitles, speech, on-screen text; tvindex.core.words) --------------------
    def write_words(self, words: EpisodeWords) -> None:
        """Atomically replace the episode's text segments of ``words.source`` (and record
        its version and error). Other sources and the episode's pictures are untouched."""
        raise StoreError(f"the {self.backend or 'this'} backend does not store words")

    def word_versions(self) -> dict[tuple[str, str], str]:
        """``(episode id, source) -> version`` of every word source written, so a run
        redoes only the sources whose model or settings changed."""
        return {}

    # --- predicted genres (tvindex.core.genres; training/genres) ---------------------------
    def write_predicted_genres(self, episodes: Mapping[str, Sequence[GenreScore]],
                               programmes: Mapping[str, Sequence[GenreScore]],
                               *, replace_all: bool = False) -> None:
        """Replace the predicted genres of the given episodes and programmes (id -> genres
        with their probability), in one write; ``replace_all`` first drops every prediction
        in the store. Catalogue genres are untouched. Unknown id: StoreError."""
        raise StoreError(f"the {self.backend or 'this'} backend does not store genres")


class CatalogueReader(_Closable, ABC):
    """What the web layer, search, recommendations and the report read."""

    @abstractmethod
    def episode_states(self) -> list[EpisodeState]: ...

    @abstractmethod
    def label_sets(self) -> list[LabelSet]: ...

    @abstractmethod
    def labels(self, label_set: str | None = None, match: str | None = None,
               counts: bool = True) -> list[LabelInfo]: ...

    @abstractmethod
    def programmes(self) -> list[ProgrammeSummary]:
        """Every programme, by title."""

    @abstractmethod
    def programme(self, programme_id: str) -> ProgrammeDetail:
        """Metadata, episodes, and top labels per label set (score, coverage)."""

    @abstractmethod
    def episode(self, episode_id: str) -> EpisodeDetail: ...

    @abstractmethod
    def segments(self, episode_id: str) -> list[SegmentView]:
        """The episode's shots/frames in time order, with their top labels."""

    @abstractmethod
    def thumbnail(self, episode_id: str, index: int) -> bytes: ...

    @abstractmethod
    def vectors(self, level: Level, label_set: str) -> tuple[list[str], np.ndarray]:
        """Ids and score vectors [N, n_labels] of every item of a level (episode/programme)."""

    @abstractmethod
    def embedding_model(self) -> str | None:
        """Identity of the tagger whose embeddings the store serves: the model of the most
        recently written episode that has embeddings (None when no episode has any). Items
        embedded by another model (mid-way through a re-index after a model change) are left
        out of ``embeddings`` until they are re-indexed."""

    @abstractmethod
    def embeddings(self, level: Level, episode_ids: Sequence[str] | None = None
                   ) -> tuple[list[str], np.ndarray]:
        """Ids and L2-normalised float32 embeddings [N, D] of the indexed items of a level
        that have one from ``embedding_model()``, ordered by id (shots by episode id, then
        index; shot ids are "EPISODE@INDEX"). Episodes are the mean of their frames' unit
        embeddings, programmes the frame-weighted mean over their episodes, then normalised.
        ``episode_ids`` restricts shots and episodes to those episodes (programmes: to the
        programmes of those episodes). Nothing stored: ``([], zeros((0, 0)))``.

        In detail, for every backend: ids sorted by code point (SQLite's BINARY collation and
        Elasticsearch's keyword order agree), shots by (episode id, integer index); an
        episode's weight in its programme is ``embedding_frames(tags)``; a row of zeros stays
        zeros (never NaN); no row at all (nothing stored, or nothing matches the filter)
        gives ``([], zeros((0, 0)))``."""

    def predicted_genres(self, level: Level, ids: Sequence[str] | None = None
                         ) -> dict[str, list[GenreScore]]:
        """Predicted genres per episode or programme id (best first), of ``ids`` or of every
        item that has some; an item without predictions is absent."""
        return {}

    def episode_clocks(self, episode_ids: Sequence[str]) -> dict[str, EpisodeClock]:
        """The broadcast clock (frame rate, start timecode; ``tvindex.core.timecode``) of each
        of ``episode_ids`` that has one; unknown ids and episodes indexed before timecodes
        were kept are absent."""
        return {}

    def transcript(self, episode_id: str, source: str | None = None) -> list[TextSegment]:
        """The episode's text segments in time order (one source, or all). Unknown episode:
        NotFound."""
        return []

    def word_sources(self, episode_id: str) -> list[dict[str, Any]]:
        """Per word source written for the episode: ``{source, version, error, segments}``
        (the error says why the source failed for it), in ``WORD_SOURCES`` order."""
        return []

    @abstractmethod
    def search(self, query: Any, level: Level = "shot", limit: int = 20,
               offset: int = 0, *, min_score: float = 0.0, sort: str = "score",
               descending: bool = True) -> SearchPage:
        """Run a resolved query (``search.query.ResolvedQuery``) by the rule of
        ``search.ranking``: presence, hard exclusion, ``min_score`` (a floor on the score; the
        total counts what is left) and the order (``sort``: score, air_date or duration)."""

    def facets(self, query: Any, level: Level = "shot", size: int = 10, *,
               min_score: float = 0.0) -> dict[str, list[tuple[str, int]]]:
        """Counts over every item ``query`` matches (not a page) per programme id, catalogue
        genre, air year and present label ("set:name"), each by count, at most ``size``
        (the rules: ``search/facets.py``). Backends without facets raise StoreError."""
        raise StoreError(f"the {self.backend or 'this'} backend does not compute facets")

    # Vocabulary protocol for the query resolver.
    def vocabulary_label_sets(self) -> dict[str, list[tuple[int, str]]]:
        out: dict[str, list[tuple[int, str]]] = {}
        for info in self.labels(counts=False):
            out.setdefault(info.label_set, []).append((info.label_id, info.name))
        return out

    def programme_titles(self) -> list[tuple[str, str]]:
        return [(p.id, p.title) for p in self.programmes()]

    def vocabulary_version(self) -> object:
        """A cheap value that changes whenever label sets or programme titles change, so the
        query resolver can reuse its label index; None when the backend cannot tell."""
        return None

    def catalogue_version(self) -> object:
        """A cheap value that changes whenever anything in the catalogue is written (by any
        process): the web server's HTTP validators (ETag, Last-Modified) are tied to it.
        None when the backend cannot tell (then answers carry no validator)."""
        return None

    read_only: bool = False
    """True when the store was opened for reading only (a read-only data directory or
    replica): reads work, every write raises :class:`CatalogueReadOnly`."""

    def check(self, thorough: bool = False) -> None:
        """Raise :class:`CatalogueCorrupt` (or :class:`StoreUnavailable`) when the store is
        damaged or cannot be reached. Cheap by default; ``thorough`` reads every page
        (``tvindex status --check``). Backends without a check of their own do nothing."""

    def data_subdir(self) -> str | None:
        """The folder of the data directory that files kept beside this catalogue (its
        vector indexes) go into, when several catalogues may share one data directory (a
        cluster's index prefixes); None when the data directory holds only this one."""
        return None


class CatalogueStore(CatalogueWriter, CatalogueReader):
    """One catalogue, both halves: programmes, episodes, segments (shots/frames), label
    statistics and embeddings. What a backend class implements, with ``from_config``
    building it from its ``config_section`` of the settings (see ``search.store``)."""

    config_section: ClassVar[str] = ""
