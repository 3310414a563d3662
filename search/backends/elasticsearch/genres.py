"""Genres in the Elasticsearch catalogue: the catalogue genres of a programme are the
keyword array ``genre_lc`` (its ``;``-separated ``genre`` split and normalised by
``tvindex.core.genres``; denormalised onto its episodes and shots for filtering), and the
genres a model predicted are ``genres_predicted`` (keyword array, the filter) with
``genre_scores`` ([{genre, score}], not indexed: a list, so a partial update replaces it) on programme and episode documents; an
episode's predicted genres are copied onto its shots (``genres_predicted``), and a re-index
keeps them (the writer copies them from the episode document).

``genre:X`` filters on ``genre_lc``; ``anygenre:X`` on ``genre_lc`` or ``genres_predicted``
(the same rule as the SQLite backend: ``search/backends/sqlite/genres.py``). The fields are
added to an older index's mapping before the first prediction is written (``put_mapping``:
an additive change, no reindex).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from search.backends.elasticsearch.indices import EsIndices
from search.backends.elasticsearch.mappings import GENRE_FIELDS
from tvindex.core.genres import GenreScore, normalise_genre, split_genres
from tvindex.core.store import StoreError


def genre_terms(genre: str) -> list[str]:
    """A programme's ``genre`` value as the ``genre_lc`` keyword array."""
    return list(split_genres(genre))


def genre_clauses(genres: Sequence[str], any_genres: Sequence[str]) -> list[dict[str, Any]]:
    """Filter clauses for ``genre:`` and ``anygenre:`` (every level's documents carry both
    fields)."""
    out: list[dict[str, Any]] = []
    if genres:
        out.append({"terms": {"genre_lc": [normalise_genre(g) for g in genres]}})
    if any_genres:
        names = [normalise_genre(g) for g in any_genres]
        out.append({"bool": {"should": [{"terms": {"genre_lc": names}},
                                        {"terms": {"genres_predicted": names}}],
                             "minimum_should_match": 1}})
    return out


class EsGenres(EsIndices):
    """Predicted genres of ``EsStore``: ``write_predicted_genres`` and ``predicted_genres``."""

    _genre_mapping_ok = False
    _update_by_query: Any  # EsWriter's (both are parts of EsStore)

    def _ensure_genre_mapping(self) -> None:
        if self._genre_mapping_ok:
            return
        for kind in ("programmes", "episodes", "shots"):
            fields = GENRE_FIELDS if kind != "shots" else {
                "genres_predicted": GENRE_FIELDS["genres_predicted"]}
            self._call(f"add genre fields to {kind}", self.es.indices.put_mapping,
                       index=self._idx[kind], properties=fields)
        self._genre_mapping_ok = True

    def write_predicted_genres(self, episodes: Mapping[str, Sequence[GenreScore]],
                               programmes: Mapping[str, Sequence[GenreScore]],
                               *, replace_all: bool = False) -> None:
        self._ensure_genre_mapping()
        for kind, items in (("episodes", episodes), ("programmes", programmes)):
            found = self._mget(kind, list(items), source=["id"])
            missing = sorted(set(items) - set(found))
            if missing:
                raise StoreError(f"unknown {kind[:-1]} {missing[0]!r}")
        update = type(self)._update_by_query  # EsWriter's, beside this class in EsStore
        if replace_all:
            for kind in ("programmes", "episodes", "shots"):
                values: dict[str, Any] = {"genres_predicted": []}
                if kind != "shots":
                    values["genre_scores"] = []
                update(self, kind, {"exists": {"field": "genres_predicted"}}, values)
        for kind, items in (("episodes", episodes), ("programmes", programmes)):
            actions = []
            for item_id, scores in items.items():
                names = [normalise_genre(s.genre) for s in scores]
                actions.append(({"update": {"_index": self._idx[kind], "_id": item_id}},
                                {"doc": {"genres_predicted": names, "genre_scores": [
                                    {"genre": g, "score": float(s.score)}
                                    for g, s in zip(names, scores)]}}))
            if actions:
                self.client.bulk(actions, f"write predicted genres of {kind}", refresh=True)
        for episode_id, scores in episodes.items():
            update(self, "shots", {"term": {"episode_id": episode_id}},
                   {"genres_predicted": [normalise_genre(s.genre) for s in scores]})

    def predicted_genres(self, level: str, ids: Sequence[str] | None = None
                         ) -> dict[str, list[GenreScore]]:
        if level not in ("episode", "programme"):
            raise StoreError(f"predicted genres exist for episodes and programmes, not {level}")
        kind = f"{level}s"
        if ids is not None:
            docs = self._mget(kind, list(ids), source=["id", "genre_scores"])
            sources = list(docs.values())
        else:
            sources = [h["_source"] for h in self._scan(
                kind, {"exists": {"field": "genres_predicted"}}, [{"id": "asc"}],
                ["id", "genre_scores"])]
        out: dict[str, list[GenreScore]] = {}
        for src in sources:
            scores = src.get("genre_scores") or []
            if scores:
                out[src["id"]] = [GenreScore(x["genre"], float(x["score"]), True) for x in
                                  sorted(scores, key=lambda x: (-x["score"], x["genre"]))]
        return dict(sorted(out.items()))
