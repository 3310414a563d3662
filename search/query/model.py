"""The query language's data structures: terms, parsed and resolved queries, the error type,
and the field names the grammar knows (shared by parsing and resolution)."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# Canonical field names. Everything else that looks like an identifier is a label-set name.
LABEL_FIELDS = {"object": "object", "obj": "object", "scene": "scene", "label": "label"}
FILTER_FIELDS = {
    "programme": "programme",
    "program": "programme",
    "prog": "programme",
    "genre": "genre",
    # catalogue or predicted genres (issue 19; search/backends/*/genres.py)
    "anygenre": "anygenre",
    "after": "after",
    "before": "before",
}
# Word fields (issue 17; search/words.py): canonical name -> the word source it searches
# (None: any source), and their aliases.
WORD_FIELDS: dict[str, str | None] = {"said": "speech", "screen": "screen",
                                      "subtitle": "subtitles", "text": None}
WORD_FIELD_ALIASES = {"said": "said", "speech": "said", "screen": "screen",
                      "subtitle": "subtitle", "subtitles": "subtitle", "sub": "subtitle",
                      "text": "text"}
# visual:"a man riding a bicycle": shots whose CLIP image embedding is near the text's (the
# openclip tagger; search/visual_search.py).
VISUAL_FIELD = "visual"
# Bare words with a meaning of their own (quote them to search the word itself).
KEYWORDS = frozenset({"or", "then", "within"})


class QueryError(ValueError):
    """A query that cannot be parsed or resolved; the message is meant for the editor.

    ``column`` is the 1-based character position the problem was found at, when there is one
    (useful for highlighting in the UI).
    """

    def __init__(self, message: str, *, column: int | None = None, code: str = "query_syntax",
                 suggestions: Sequence[str] = (), term: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        # For structured error bodies: a stable code ("query_syntax", "unknown_label",
        # "unknown_programme"), the did-you-mean names, and the term (as typed) it is about.
        self.code = code
        self.suggestions = tuple(suggestions)
        self.term = term


def collapse_spaces(s: str) -> str:
    """``s`` with runs of whitespace as one space, none at the ends."""
    return " ".join(s.split())


def dedup(items: Iterable[Any]) -> tuple[Any, ...]:
    """``items`` without repeats, first occurrence kept."""
    return tuple(dict.fromkeys(items))


def _quote_if_needed(value: str, *, free: bool) -> str:
    """``value`` as query text that parses back to the same value."""
    needs = (
        any(ch.isspace() for ch in value)
        or ":" in value
        or value.startswith(("-", "~"))
        or (free and value.casefold() in KEYWORDS)
    )
    return f'"{value}"' if needs else value


def format_seconds(seconds: float) -> str:
    """A window as query text: ``30s``, ``2.5s``."""
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Term:
    """One label or free term.

    ``field`` is ``"object"``, ``"scene"``, ``"label"``, a label-set name (lower case), or
    ``None`` for a free term; ``value`` is as typed, quotes removed, whitespace collapsed.
    """

    field: str | None
    value: str

    @property
    def kind(self) -> str:
        """``"any"`` (free term), ``"object"``, ``"scene"``, ``"label"``, ``"words"``
        (``said:``, ``screen:``, ``subtitle:``, ``text:``), ``"visual"`` or ``"set"``."""
        if self.field is None:
            return "any"
        if self.field in WORD_FIELD_ALIASES:
            return "words"
        if self.field == VISUAL_FIELD:
            return "visual"
        if self.field in ("object", "scene", "label"):
            return self.field
        return "set"

    def to_query(self) -> str:
        """The term as query text (canonical field name, quoted when needed)."""
        if self.field is None:
            return _quote_if_needed(self.value, free=True)
        return f"{self.field}:{_quote_if_needed(self.value, free=False)}"

    def __str__(self) -> str:
        return self.to_query()

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class ParsedQuery:
    """A query's structure, independent of any store.

    ``groups``: every group is required (present); a group matches when any of its terms
    does. ``excluded``: terms that must not be present (``-term``, hard). ``soft_excluded``:
    terms preferred absent (``~term``: they only lower the score). ``then_groups``: the groups
    after ``then`` (a temporal query: the ``groups`` are moment A, these moment B);
    ``within_s``: its window in seconds (None: B is the next shot). ``programmes``/``genres``:
    OR within each list. ``after``/``before``: inclusive air-date bounds.
    """

    groups: tuple[tuple[Term, ...], ...] = ()
    excluded: tuple[Term, ...] = ()
    programmes: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    after: datetime.date | None = None
    before: datetime.date | None = None
    soft_excluded: tuple[Term, ...] = ()
    then_groups: tuple[tuple[Term, ...], ...] = ()
    within_s: float | None = None
    any_genres: tuple[str, ...] = ()  # anygenre: catalogue or predicted genres (OR)

    @property
    def temporal(self) -> bool:
        return bool(self.then_groups)

    def to_query(self) -> str:
        """Canonical query text; ``parse_query(q.to_query()) == q``."""
        parts = [" OR ".join(t.to_query() for t in group) for group in self.groups]
        if self.then_groups:
            parts.append("then")
            parts += [" OR ".join(t.to_query() for t in group) for group in self.then_groups]
            if self.within_s is not None:
                parts.append(f"within {format_seconds(self.within_s)}")
        parts += [f"-{t.to_query()}" for t in self.excluded]
        parts += [f"~{t.to_query()}" for t in self.soft_excluded]
        parts += [f"programme:{_quote_if_needed(p, free=False)}" for p in self.programmes]
        parts += [f"genre:{_quote_if_needed(g, free=False)}" for g in self.genres]
        parts += [f"anygenre:{_quote_if_needed(g, free=False)}" for g in self.any_genres]
        if self.after is not None:
            parts.append(f"after:{self.after.isoformat()}")
        if self.before is not None:
            parts.append(f"before:{self.before.isoformat()}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [[t.to_dict() for t in group] for group in self.groups],
            "excluded": [t.to_dict() for t in self.excluded],
            "soft_excluded": [t.to_dict() for t in self.soft_excluded],
            "then_groups": [[t.to_dict() for t in group] for group in self.then_groups],
            "within_s": self.within_s,
            "programmes": list(self.programmes),
            "genres": list(self.genres),
            "after": self.after.isoformat() if self.after else None,
            "before": self.before.isoformat() if self.before else None,
            **({"any_genres": list(self.any_genres)} if self.any_genres else {}),
        }


@dataclass(frozen=True)
class LabelRef:
    """One label of one label set, as the store numbers it."""

    label_id: int
    label_set: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"label_id": self.label_id, "label_set": self.label_set, "name": self.name}


@dataclass(frozen=True)
class WordRef:
    """A word term in store terms: ``field`` as typed canonically (``said``, ``screen``,
    ``subtitle``, ``text``), the word ``source`` it searches (None: any) and the words (several
    words match as a phrase, in order; search/words.py says how)."""

    field: str
    source: str | None
    value: str

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "source": self.source, "value": self.value}


@runtime_checkable
class Vocabulary(Protocol):
    """What resolution needs from the store."""

    def label_sets(self) -> dict[str, list[tuple[int, str]]]:
        """Label-set name -> ``[(label_id, label name)]``."""
        ...

    def programme_titles(self) -> list[tuple[str, str]]:
        """``[(programme_id, title)]``."""
        ...


@dataclass(frozen=True)
class ResolvedQuery:
    """A query in store terms: every group (an OR of labels) must be present, ``excluded``
    labels must not be present (hard), ``soft_excluded`` labels only lower the score;
    ``programme_ids`` (OR; empty = no programme filter), ``genres`` (OR; empty = no filter)
    and the inclusive air-date bounds restrict the items; ``episode_ids`` (not in the query
    language: the engine's best-shot look-up) restricts them to those episodes.

    ``group_terms``/``excluded_terms``/``soft_terms``: the query text each group or label came
    from (the per-term evidence of a hit names it). ``then_groups``/``then_terms``/``within_s``:
    moment B of a temporal query (see ``search.temporal``)."""

    groups: tuple[tuple[LabelRef, ...], ...] = ()
    excluded: tuple[LabelRef, ...] = ()
    programme_ids: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    after: datetime.date | None = None
    before: datetime.date | None = None
    soft_excluded: tuple[LabelRef, ...] = ()
    # Annotations (what each group/label was typed as): not part of a query's identity.
    group_terms: tuple[str, ...] = field(default=(), compare=False)
    excluded_terms: tuple[str, ...] = field(default=(), compare=False)
    soft_terms: tuple[str, ...] = field(default=(), compare=False)
    then_groups: tuple[tuple[LabelRef, ...], ...] = ()
    then_terms: tuple[str, ...] = field(default=(), compare=False)
    within_s: float | None = None
    episode_ids: tuple[str, ...] = ()
    # Word terms (issue 17): each group an OR of word terms, required like ``groups``;
    # items a ``word_excluded`` term matches are removed (search/words.py).
    word_groups: tuple[tuple[WordRef, ...], ...] = ()
    word_excluded: tuple[WordRef, ...] = ()
    then_word_groups: tuple[tuple[WordRef, ...], ...] = ()  # moment B's word terms
    # anygenre: (issue 19): items whose catalogue genres or own predicted genres hold one.
    any_genres: tuple[str, ...] = ()
    # visual: terms (issue 17; search/visual_search.py): each text required, answered by
    # the CLIP shot index before the rest of the query narrows its shots.
    visual_terms: tuple[str, ...] = ()

    @property
    def temporal(self) -> bool:
        return bool(self.then_groups or self.then_word_groups)

    def term_of_group(self, g: int) -> str:
        return self.group_terms[g] if g < len(self.group_terms) else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [[r.to_dict() for r in group] for group in self.groups],
            "excluded": [r.to_dict() for r in self.excluded],
            "soft_excluded": [r.to_dict() for r in self.soft_excluded],
            "then_groups": [[r.to_dict() for r in group] for group in self.then_groups],
            "within_s": self.within_s,
            "programme_ids": list(self.programme_ids),
            "genres": list(self.genres),
            "after": self.after.isoformat() if self.after else None,
            "before": self.before.isoformat() if self.before else None,
            **({"word_groups": [[r.to_dict() for r in g] for g in self.word_groups],
                "word_excluded": [r.to_dict() for r in self.word_excluded]}
               if self.word_groups or self.word_excluded else {}),
            **({"then_word_groups": [[r.to_dict() for r in g] for g in self.then_word_groups]}
               if self.then_word_groups else {}),
            **({"any_genres": list(self.any_genres)} if self.any_genres else {}),
            **({"visual_terms": list(self.visual_terms)} if self.visual_terms else {}),
        }
