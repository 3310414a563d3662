"""Genres as lists: a catalogue's ``genre`` value may name several genres, ``;``-separated
("news; sport"). Every reader of a genre value (the manifest, the stores, the ``genre:``
filter, facets, the genre tagger in ``training/genres``) splits it with :func:`split_genres`
so that they all agree on what one genre is.

Predicted genres (``training/genres``) are stored beside the metadata with their score and a
``predicted`` flag; :class:`GenreScore` is the record the stores and readers exchange.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

SEPARATOR = ";"
_SPACES = re.compile(r"\s+")


def normalise_genre(text: str) -> str:
    """One genre as stored and compared: NFC, trimmed, inner spaces collapsed, lower case."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", str(text))).strip().lower()


def split_genres(text: str | None) -> tuple[str, ...]:
    """The genres of a ``;``-separated value, normalised (:func:`normalise_genre`), empty
    parts dropped, duplicates removed, first occurrence order kept.

    >>> split_genres(" News ; sport;;news ")
    ('news', 'sport')
    """
    if not text:
        return ()
    out: dict[str, None] = {}
    for part in str(text).split(SEPARATOR):
        genre = normalise_genre(part)
        if genre:
            out.setdefault(genre, None)
    return tuple(out)


def join_genres(genres: tuple[str, ...] | list[str]) -> str:
    """The inverse of :func:`split_genres` for already normalised genres."""
    return f"{SEPARATOR} ".join(genres)


@dataclass(frozen=True)
class GenreScore:
    """A genre of an episode or programme: ``predicted`` is False for catalogue metadata
    (score 1.0) and True for a model's prediction, with its probability as ``score``."""

    genre: str
    score: float
    predicted: bool

    def to_dict(self) -> dict[str, Any]:
        return {"genre": self.genre, "score": round(float(self.score), 4),
                "predicted": self.predicted}


def merged_genres(catalogue: str, predicted: list[GenreScore] | tuple[GenreScore, ...]
                  ) -> list[GenreScore]:
    """What an item shows: its catalogue genres (``predicted`` False, score 1) and then the
    predicted ones that the catalogue does not already name."""
    own = split_genres(catalogue)
    return ([GenreScore(g, 1.0, False) for g in own]
            + [g for g in predicted if g.genre not in own])
