"""Genres in the SQLite catalogue (schema 5): every programme's catalogue genres as rows
(``predicted`` 0, score 1: the ``;``-separated ``programmes.genre`` split by
``tvindex.core.genres.split_genres``), and the genres a model predicted (``predicted`` 1, with
its probability) per programme and per episode.

- ``programme_genres`` (programme_key, genre, predicted, score): metadata rows are rewritten
  whenever the catalogue is upserted (``sync_programme_genres``); migration 5 splits the
  genres of an existing catalogue in SQL (``schema.py``);
- ``episode_genres`` (episode_key, genre, predicted, score): predicted rows only (an episode's
  metadata genres are its programme's).

``genre:X`` matches items whose programme's catalogue genres hold X; ``anygenre:X`` also
matches items whose own predicted genres hold X (an episode's for episodes and shots, a
programme's for programmes): :func:`genre_filter`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from search.backends.sqlite.schema import SqliteBase
from tvindex.core.genres import GenreScore, normalise_genre, split_genres
from tvindex.core.store import StoreError


def sync_programme_genres(db: sqlite3.Connection, programme_id: str, genre: str) -> None:
    """Rewrite a programme's catalogue-genre rows from its ``genre`` value (in the caller's
    transaction; ``upsert_catalogue`` calls it)."""
    db.execute("DELETE FROM programme_genres WHERE predicted=0 AND programme_key="
               "(SELECT key FROM programmes WHERE id=?)", (programme_id,))
    db.executemany("INSERT INTO programme_genres SELECT key, ?, 0, 1.0 FROM programmes "
                   "WHERE id=?", [(g, programme_id) for g in split_genres(genre)])


def genre_filter(genres: Sequence[str], any_genres: Sequence[str], level: str
                 ) -> tuple[list[str], list[Any]]:
    """SQL conditions (on ``p`` programmes, ``e`` episodes) and their parameters for the
    ``genre:`` (catalogue) and ``anygenre:`` (catalogue or predicted) filters."""
    where: list[str] = []
    params: list[Any] = []
    if genres:
        names = [normalise_genre(g) for g in genres]
        where.append("p.key IN (SELECT programme_key FROM programme_genres WHERE predicted=0 "
                     f"AND genre IN ({','.join('?' * len(names))}))")
        params += names
    if any_genres:
        names = [normalise_genre(g) for g in any_genres]
        marks = ",".join("?" * len(names))
        own = ("p.key IN (SELECT programme_key FROM programme_genres WHERE predicted=1 "
               f"AND genre IN ({marks}))" if level == "programme" else
               "e.key IN (SELECT episode_key FROM episode_genres WHERE predicted=1 "
               f"AND genre IN ({marks}))")
        where.append("(p.key IN (SELECT programme_key FROM programme_genres WHERE predicted=0 "
                     f"AND genre IN ({marks})) OR {own})")
        params += names + names
    return where, params


class SqliteGenres(SqliteBase):
    """Predicted genres of ``SqliteStore``: ``write_predicted_genres`` and
    ``predicted_genres``."""

    def write_predicted_genres(self, episodes: Mapping[str, Sequence[GenreScore]],
                               programmes: Mapping[str, Sequence[GenreScore]],
                               *, replace_all: bool = False) -> None:
        with self._tx() as db:
            if replace_all:
                db.execute("DELETE FROM episode_genres WHERE predicted=1")
                db.execute("DELETE FROM programme_genres WHERE predicted=1")
            for table, col, items, lookup in (
                    ("episode_genres", "episode_key", episodes, "episodes"),
                    ("programme_genres", "programme_key", programmes, "programmes")):
                for item_id, scores in items.items():
                    row = db.execute(f"SELECT key FROM {lookup} WHERE id=?",
                                     (item_id,)).fetchone()
                    if row is None:
                        raise StoreError(f"unknown {lookup[:-1]} {item_id!r}")
                    db.execute(f"DELETE FROM {table} WHERE predicted=1 AND {col}=?", (row[0],))
                    db.executemany(
                        f"INSERT OR REPLACE INTO {table} ({col}, genre, predicted, score) "
                        "VALUES (?,?,1,?)",
                        [(row[0], normalise_genre(s.genre), float(s.score)) for s in scores])

    def predicted_genres(self, level: str, ids: Sequence[str] | None = None
                         ) -> dict[str, list[GenreScore]]:
        if level not in ("episode", "programme"):
            raise StoreError(f"predicted genres exist for episodes and programmes, not {level}")
        table, col, items = (("episode_genres", "episode_key", "episodes") if level == "episode"
                             else ("programme_genres", "programme_key", "programmes"))
        sql = (f"SELECT i.id, g.genre, g.score FROM {table} g JOIN {items} i ON i.key = g.{col} "
               "WHERE g.predicted=1")
        params: list[Any] = []
        if ids is not None:
            ids = list(ids)
            if not ids:
                return {}
            sql += f" AND i.id IN ({','.join('?' * len(ids))})"
            params = ids
        out: dict[str, list[GenreScore]] = {}
        for item_id, genre, score in self.db.execute(sql + " ORDER BY i.id, g.score DESC, "
                                                     "g.genre", params):
            out.setdefault(item_id, []).append(GenreScore(genre, float(score), True))
        return out
