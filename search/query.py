"""The editors' query language: text -> :class:`ParsedQuery` -> :class:`ResolvedQuery`.

Example::

    object:dog scene:beach -object:car programme:"El gran dictat" after:2020-01-01

Parsing (:func:`parse_query`) is purely syntactic and needs no store; resolving
(:func:`resolve_query`) maps the terms onto label ids and programme ids of a
:class:`Vocabulary`. Both produce frozen, hashable dataclasses with ``to_dict()`` so a
query can be logged or returned as JSON evidence; neither touches a database.

Grammar (whitespace separated; field names and ``OR`` are case-insensitive):

* ``field:value``, the value a bare word or a ``"quoted phrase"``. Label fields: ``object``
  (alias ``obj``), ``scene``, ``label`` (every label set) or a label-set name such as
  ``coco80:`` or ``places365:`` (any ``[a-z][a-z0-9_]*`` that is not a filter field; whether
  the set exists is checked when resolving). Filter fields: ``programme`` (``program``,
  ``prog``), ``genre``, ``after:YYYY-MM-DD`` and ``before:YYYY-MM-DD`` (air date, inclusive).
* A bare word or bare quoted phrase is a free term (field ``None``): matched against label
  names in every set and, failing that, programme titles.
* ``-term`` excludes a label or free term; filters cannot be negated.
* ``a OR b`` makes two terms alternatives; chains are allowed; negated terms and filters
  cannot take part. ``"or"`` in quotes is an ordinary free term.

Hostile text is not special: it is tokenised like any other query and either becomes plain
free terms or a :class:`QueryError`, deterministically. Nothing here builds SQL; backends must
bind the values as parameters. For instance ``DROP TABLE shots`` parses into three free terms,
while ``'; DROP TABLE shots; --`` is rejected because ``';`` contains no letter or digit.
"""

from __future__ import annotations

import datetime
import difflib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_MAX_TERMS",
    "LabelRef",
    "ParsedQuery",
    "QueryError",
    "ResolvedQuery",
    "Term",
    "Vocabulary",
    "normalise_label",
    "parse_query",
    "resolve_query",
]

DEFAULT_MAX_LENGTH = 1000
# Terms and filters together; OR keywords are not counted. A ceiling keeps the backend's
# query plan (one join/filter per term) bounded whatever an editor pastes in.
DEFAULT_MAX_TERMS = 32

# Canonical field names. Everything else that looks like an identifier is a label-set name.
_LABEL_FIELDS = {"object": "object", "obj": "object", "scene": "scene", "label": "label"}
_FILTER_FIELDS = {
    "programme": "programme",
    "program": "programme",
    "prog": "programme",
    "genre": "genre",
    "after": "after",
    "before": "before",
}
_FIELD_NAME_RE = re.compile(r"[a-z][a-z0-9_]*", re.ASCII)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
# The ASCII whitespace controls are separators; every other control character is rejected.
_ASCII_SPACE = frozenset(" \t\n\r\f\v")
_MAX_SUGGESTIONS = 5
# difflib's default (0.6) drops plausible typo targets such as 'tricycle' for 'bycicle' (0.53).
_SUGGESTION_CUTOFF = 0.5
_SNIPPET = 16


class QueryError(ValueError):
    """A query that cannot be parsed or resolved; the message is meant for the editor.

    ``column`` is the 1-based character position the problem was found at, when there is one
    (useful for highlighting in the UI).
    """

    def __init__(self, message: str, *, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


# ----------------------------------------------------------------------------------------------
# Data structures
# ----------------------------------------------------------------------------------------------


def _quote_if_needed(value: str, *, free: bool) -> str:
    """``value`` as query text that parses back to the same value."""
    needs = (
        any(ch.isspace() for ch in value)
        or ":" in value
        or value.startswith("-")
        or (free and value.casefold() == "or")
    )
    return f'"{value}"' if needs else value


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
        """``"any"`` (free term), ``"object"``, ``"scene"``, ``"label"`` or ``"set"``."""
        if self.field is None:
            return "any"
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

    ``groups``: every group is required; a group matches when any of its terms does.
    ``excluded``: terms that must not match. ``programmes``/``genres``: OR within each list.
    ``after``/``before``: inclusive air-date bounds.
    """

    groups: tuple[tuple[Term, ...], ...] = ()
    excluded: tuple[Term, ...] = ()
    programmes: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    after: datetime.date | None = None
    before: datetime.date | None = None

    def to_query(self) -> str:
        """Canonical query text; ``parse_query(q.to_query()) == q``."""
        parts = [" OR ".join(t.to_query() for t in group) for group in self.groups]
        parts += [f"-{t.to_query()}" for t in self.excluded]
        parts += [f"programme:{_quote_if_needed(p, free=False)}" for p in self.programmes]
        parts += [f"genre:{_quote_if_needed(g, free=False)}" for g in self.genres]
        if self.after is not None:
            parts.append(f"after:{self.after.isoformat()}")
        if self.before is not None:
            parts.append(f"before:{self.before.isoformat()}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [[t.to_dict() for t in group] for group in self.groups],
            "excluded": [t.to_dict() for t in self.excluded],
            "programmes": list(self.programmes),
            "genres": list(self.genres),
            "after": self.after.isoformat() if self.after else None,
            "before": self.before.isoformat() if self.before else None,
        }


@dataclass(frozen=True)
class LabelRef:
    """One label of one label set, as the store numbers it."""

    label_id: int
    label_set: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"label_id": self.label_id, "label_set": self.label_set, "name": self.name}


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
    """A query in store terms: every group (an OR of labels) is required, ``excluded`` labels
    must be absent; ``programme_ids`` (OR; empty = no programme filter), ``genres`` (OR; empty =
    no filter) and the inclusive air-date bounds restrict the items."""

    groups: tuple[tuple[LabelRef, ...], ...] = ()
    excluded: tuple[LabelRef, ...] = ()
    programme_ids: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    after: datetime.date | None = None
    before: datetime.date | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [[r.to_dict() for r in group] for group in self.groups],
            "excluded": [r.to_dict() for r in self.excluded],
            "programme_ids": list(self.programme_ids),
            "genres": list(self.genres),
            "after": self.after.isoformat() if self.after else None,
            "before": self.before.isoformat() if self.before else None,
        }


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    """A lexed item: an ``OR`` keyword, or a (possibly negated, possibly fielded) value."""

    column: int  # 1-based, where the token starts (its '-' if negated)
    raw: str  # the token as typed, for messages
    is_or: bool = False
    negated: bool = False
    field: str | None = None  # as typed
    field_column: int = 0
    value: str = ""
    quoted: bool = False


def _is_space(ch: str) -> bool:
    return ch in _ASCII_SPACE or (ch.isspace() and unicodedata.category(ch) != "Cc")


def _collapse(s: str) -> str:
    return " ".join(s.split())


def _snippet(s: str) -> str:
    return s if len(s) <= _SNIPPET else s[:_SNIPPET].rstrip() + " ..."


def _check_characters(text: str) -> None:
    """Reject control characters and lone surrogates: they are never meaningful in a search
    and would otherwise leak into logs, JSON and the store."""
    for i, ch in enumerate(text):
        if ch in _ASCII_SPACE:
            continue
        cat = unicodedata.category(ch)
        if cat == "Cc":
            raise QueryError(
                f"control character U+{ord(ch):04X} at column {i + 1} is not allowed",
                column=i + 1,
            )
        if cat == "Cs":
            raise QueryError(
                f"invalid character U+{ord(ch):04X} (lone surrogate) at column {i + 1}",
                column=i + 1,
            )


class _Lexer:
    """Splits query text into :class:`_Token` s, reporting errors with 1-based columns."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)

    def _read_quoted(self, q: int) -> tuple[str, int]:
        """Read the phrase whose opening quote is at index ``q``; return (value, next index)."""
        text = self.text
        close = text.find('"', q + 1)
        if close < 0:
            raise QueryError(
                f"unbalanced quote: {_snippet(text[q:])} (opened at column {q + 1})",
                column=q + 1,
            )
        after = close + 1
        if after < self.n and not _is_space(text[after]):
            raise QueryError(
                f"unexpected {text[after]!r} right after the closing quote at column {close + 1}"
                " (separate terms with a space)",
                column=after + 1,
            )
        return _collapse(text[q + 1 : close]), after

    def _read_bare(self, start: int, token_start: int) -> tuple[str, int]:
        """Read a bare value from ``start`` up to whitespace; quotes and colons are errors there
        because they would make the value ambiguous."""
        text, j = self.text, start
        while j < self.n and not _is_space(text[j]):
            ch = text[j]
            if ch == '"':
                raise QueryError(
                    f"unexpected quote at column {j + 1} in {self._raw(token_start)!r}"
                    " (quotes must enclose a whole value, like field:\"two words\")",
                    column=j + 1,
                )
            if ch == ":":
                raise QueryError(
                    f"unexpected ':' at column {j + 1} in {self._raw(token_start)!r}"
                    " (a term has one 'field:'; quote a value that contains ':')",
                    column=j + 1,
                )
            j += 1
        return text[start:j], j

    def _raw(self, start: int) -> str:
        """The whitespace-delimited chunk starting at ``start`` (for messages)."""
        j = start
        while j < self.n and not _is_space(self.text[j]):
            j += 1
        return _snippet(self.text[start:j])

    def tokens(self) -> Iterable[_Token]:
        text, n = self.text, self.n
        i = 0
        while i < n:
            if _is_space(text[i]):
                i += 1
                continue
            start = i
            negated = text[i] == "-"
            if negated:
                i += 1
                if i == n or _is_space(text[i]):
                    raise QueryError(
                        f"dangling '-' at column {start + 1}: put the term to exclude right"
                        " after it, like -object:car",
                        column=start + 1,
                    )
                if text[i] == "-":
                    raise QueryError(
                        f"double '-' at column {start + 1} in {self._raw(start)!r}:"
                        " a term is excluded with a single '-'",
                        column=start + 1,
                    )
            field: str | None = None
            field_column = 0
            if text[i] == '"':
                value, i = self._read_quoted(i)
                quoted = True
            else:
                # A bare chunk: either "field:value" or a plain word.
                j = i
                while j < n and not _is_space(text[j]) and text[j] not in ':"':
                    j += 1
                if j < n and text[j] == ":":
                    field, field_column = text[i:j], i + 1
                    self._check_field_name(field, field_column)
                    k = j + 1
                    if k == n or _is_space(text[k]):
                        hint = ""
                        if k < n and text[k:].strip():
                            hint = f" (write {field}:value with no space after ':')"
                        raise QueryError(
                            f"empty value after '{field}:' at column {field_column}{hint}",
                            column=field_column,
                        )
                    if text[k] == '"':
                        value, i = self._read_quoted(k)
                        quoted = True
                    else:
                        value, i = self._read_bare(k, start)
                        quoted = False
                elif j < n and text[j] == '"':
                    raise QueryError(
                        f"unexpected quote at column {j + 1} in {self._raw(start)!r}"
                        " (quotes must enclose a whole value, like \"two words\")",
                        column=j + 1,
                    )
                else:
                    value, i = text[i:j], j
                    quoted = False
            if quoted and not value:
                if field is None:
                    raise QueryError(
                        f"empty quoted phrase at column {start + 1}", column=start + 1
                    )
                raise QueryError(
                    f"empty value after '{field}:' at column {field_column}", column=field_column
                )
            raw = _snippet(text[start:i])
            if field is None and not quoted and value.casefold() == "or":
                if negated:
                    raise QueryError(
                        f"'{raw}' at column {start + 1}: OR cannot be negated"
                        ' (to exclude the word itself, quote it: -"or")',
                        column=start + 1,
                    )
                yield _Token(column=start + 1, raw=raw, is_or=True)
                continue
            yield _Token(
                column=start + 1,
                raw=raw,
                negated=negated,
                field=field,
                field_column=field_column,
                value=value,
                quoted=quoted,
            )

    @staticmethod
    def _check_field_name(field: str, column: int) -> None:
        if not field:
            raise QueryError(
                f"missing field name before ':' at column {column}"
                " (like object:dog, scene:beach, programme:\"...\")",
                column=column,
            )
        if not (field.isascii() and _FIELD_NAME_RE.fullmatch(field.lower())):
            raise QueryError(
                f"invalid field name {_snippet(field)!r} at column {column}: field names are"
                " letters, digits and '_', starting with a letter (quote a value containing ':')",
                column=column,
            )


def _parse_date(tok: _Token, field: str) -> datetime.date:
    if _DATE_RE.fullmatch(tok.value):
        try:
            return datetime.date.fromisoformat(tok.value)
        except ValueError:
            pass
    raise QueryError(
        f"bad date {_snippet(tok.value)!r} in '{tok.field}:' at column {tok.column}:"
        f" expected YYYY-MM-DD, like {field}:2020-01-31",
        column=tok.column,
    )


def _has_alnum(value: str) -> bool:
    return any(ch.isalnum() for ch in value)


def _dedup(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


def parse_query(
    text: str, *, max_length: int = DEFAULT_MAX_LENGTH, max_terms: int = DEFAULT_MAX_TERMS
) -> ParsedQuery:
    """Parse editor query text into a :class:`ParsedQuery`.

    Raises :class:`QueryError` (a ``ValueError``) with a message saying what is wrong and at
    which column, and never any other exception for a ``str`` input (a non-``str`` is a
    programming error: ``TypeError``). Other choices the grammar leaves open:

    * whitespace is any Unicode space (tabs, newlines, no-break spaces separate terms); other
      control characters and lone surrogates are errors;
    * a value must contain a letter or digit (so ``';`` or ``--`` alone is an error);
    * ``-or`` is an error (quote it to exclude the word), ``--x`` is an error;
    * repeated terms are deduplicated (within a group, identical groups, exclusions, filters);
    * repeated ``after:``/``before:`` bounds must all hold, so the tightest one is kept;
    * a query of only exclusions (``-dog``) or only filters is valid.
    """
    if not isinstance(text, str):
        raise TypeError(f"query must be a str, not {type(text).__name__}")
    if len(text) > max_length:
        raise QueryError(f"query too long: {len(text)} characters (limit {max_length})")
    _check_characters(text)
    if not text.strip():
        raise QueryError("empty query")

    groups: list[list[Term]] = []
    excluded: list[Term] = []
    programmes: list[str] = []
    genres: list[str] = []
    after: datetime.date | None = None
    before: datetime.date | None = None
    after_tok: _Token | None = None
    before_tok: _Token | None = None

    # What the previous token was, so OR can check both of its neighbours.
    prev: _Token | None = None
    pending_or: _Token | None = None
    count = 0

    for tok in _Lexer(text).tokens():
        if tok.is_or:
            if prev is None:
                raise QueryError(
                    f"OR at column {tok.column} has no term before it", column=tok.column
                )
            if prev.is_or:
                raise QueryError(f"OR repeated at column {tok.column}", column=tok.column)
            _check_or_operand(prev, tok)
            pending_or = tok
            prev = tok
            continue

        count += 1
        if count > max_terms:
            raise QueryError(
                f"too many terms: more than {max_terms} (limit {max_terms}) at column"
                f" {tok.column}",
                column=tok.column,
            )
        if pending_or is not None:
            _check_or_operand(tok, pending_or)

        if tok.field is not None:
            name = tok.field.lower()
            filt = _FILTER_FIELDS.get(name)
            if filt is not None:
                if tok.negated:
                    raise QueryError(
                        f"cannot negate a filter: '{tok.raw}' at column {tok.column}",
                        column=tok.column,
                    )
                if filt in ("after", "before"):
                    day = _parse_date(tok, filt)
                    # Two bounds of the same kind must both hold: keep the tighter one.
                    if filt == "after" and (after is None or day > after):
                        after, after_tok = day, tok
                    elif filt == "before" and (before is None or day < before):
                        before, before_tok = day, tok
                else:
                    if not _has_alnum(tok.value):
                        raise _no_alnum(tok)
                    (programmes if filt == "programme" else genres).append(tok.value)
                prev = tok
                continue
            field: str | None = _LABEL_FIELDS.get(name, name)
        else:
            field = None

        if not _has_alnum(tok.value):
            raise _no_alnum(tok)
        term = Term(field, tok.value)
        if tok.negated:
            excluded.append(term)
        elif pending_or is not None:
            groups[-1].append(term)
        else:
            groups.append([term])
        pending_or = None
        prev = tok

    if pending_or is not None:
        raise QueryError(
            f"dangling OR at column {pending_or.column}: it needs a term after it",
            column=pending_or.column,
        )
    if after is not None and before is not None and after > before:
        assert after_tok is not None and before_tok is not None
        raise QueryError(
            f"after:{after.isoformat()} is later than before:{before.isoformat()}:"
            " no air date can match",
            column=after_tok.column,
        )

    group_tuples = _dedup(_dedup(g) for g in groups)
    return ParsedQuery(
        groups=group_tuples,
        excluded=_dedup(excluded),
        programmes=_dedup(programmes),
        genres=_dedup(genres),
        after=after,
        before=before,
    )


def _no_alnum(tok: _Token) -> QueryError:
    return QueryError(
        f"{tok.raw!r} at column {tok.column} has no letters or digits to search for",
        column=tok.column,
    )


def _check_or_operand(tok: _Token, or_tok: _Token) -> None:
    """``tok`` sits next to an OR: it must be a positive label or free term."""
    if tok.negated:
        raise QueryError(
            f"negated term '{tok.raw}' (column {tok.column}) cannot be part of OR"
            f" (OR at column {or_tok.column})",
            column=tok.column,
        )
    if tok.field is not None and tok.field.lower() in _FILTER_FIELDS:
        raise QueryError(
            f"filter '{tok.raw}' (column {tok.column}) cannot be part of OR"
            f" (OR at column {or_tok.column}); repeat programme:/genre: filters instead,"
            " they are alternatives already",
            column=tok.column,
        )


# ----------------------------------------------------------------------------------------------
# Resolution
# ----------------------------------------------------------------------------------------------


def normalise_label(name: str) -> str:
    """The form label names are compared in: case-folded, ``_`` as space, spaces collapsed."""
    return _collapse(name.replace("_", " ").casefold())


def _normalise_title(title: str) -> str:
    return _collapse(title.casefold())


class _Index:
    """Label and programme look-ups built once per :func:`resolve_query` call."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        scene_sets: Sequence[str],
        object_sets: Sequence[str],
    ) -> None:
        raw_sets = vocabulary.label_sets()
        # Set names compare case-insensitively, like field names.
        self.set_names: dict[str, str] = {}
        self.by_name: dict[str, dict[str, list[LabelRef]]] = {}
        self.display: dict[str, dict[str, str]] = {}
        for set_name, labels in raw_sets.items():
            self.set_names.setdefault(set_name.lower(), set_name)
            names = self.by_name.setdefault(set_name, {})
            display = self.display.setdefault(set_name, {})
            for label_id, name in labels:
                key = normalise_label(name)
                names.setdefault(key, []).append(LabelRef(int(label_id), set_name, name))
                display.setdefault(key, name)
        self.all_sets = tuple(sorted(self.by_name))
        self.wanted = {"object": tuple(object_sets), "scene": tuple(scene_sets)}
        self.object_sets = self._present(object_sets)
        self.scene_sets = self._present(scene_sets)
        self.programmes = list(vocabulary.programme_titles())

    def _present(self, wanted: Sequence[str]) -> tuple[str, ...]:
        found = (self.set_names.get(s.lower()) for s in wanted)
        return _dedup(s for s in found if s is not None)

    def sets_for(self, term: Term) -> tuple[str, ...]:
        """The label sets a term searches, or a QueryError when there are none."""
        if term.field is None or term.field == "label":
            sets = self.all_sets
            if not sets:
                raise QueryError(f"no label sets in the vocabulary to resolve '{term}'")
            return sets
        if term.field in ("object", "scene"):
            sets = self.object_sets if term.field == "object" else self.scene_sets
            if not sets:
                raise QueryError(
                    f"'{term}': no {term.field} label set in the vocabulary (looked for"
                    f" {', '.join(self.wanted[term.field]) or 'none'}; available sets:"
                    f" {', '.join(self.all_sets) or 'none'})"
                )
            return sets
        actual = self.set_names.get(term.field)
        if actual is None:
            choices = sorted(set(self.set_names) | set(_LABEL_FIELDS) | set(_FILTER_FIELDS))
            close = difflib.get_close_matches(term.field, choices, n=3)
            hint = f"; did you mean: {', '.join(close)}?" if close else ""
            raise QueryError(
                f"unknown label set '{term.field}' in '{term}'; available sets:"
                f" {', '.join(self.all_sets) or 'none'}{hint}"
            )
        return (actual,)

    def labels(self, value: str, sets: Sequence[str]) -> tuple[LabelRef, ...]:
        key = normalise_label(value)
        return _dedup(ref for s in sets for ref in self.by_name[s].get(key, ()))

    def suggestions(self, value: str, sets: Sequence[str]) -> list[str]:
        display: dict[str, str] = {}
        for s in sets:
            for key, name in self.display[s].items():
                display.setdefault(key, name)
        close = difflib.get_close_matches(
            normalise_label(value), list(display), n=_MAX_SUGGESTIONS, cutoff=_SUGGESTION_CUTOFF
        )
        return [display[c] for c in close]

    def programmes_containing(self, value: str) -> tuple[str, ...]:
        needle = _normalise_title(value)
        return _dedup(pid for pid, title in self.programmes if needle in _normalise_title(title))

    def programme_filter(self, value: str) -> tuple[str, ...]:
        """Exact id, else exact title (case-insensitive), else title substring."""
        ids = _dedup(pid for pid, _ in self.programmes if pid == value)
        if ids:
            return ids
        needle = _normalise_title(value)
        ids = _dedup(pid for pid, title in self.programmes if _normalise_title(title) == needle)
        if ids:
            return ids
        ids = self.programmes_containing(value)
        if ids:
            return ids
        titles = {_normalise_title(t): t for _, t in reversed(self.programmes)}
        close = difflib.get_close_matches(
            needle, list(titles), n=_MAX_SUGGESTIONS, cutoff=_SUGGESTION_CUTOFF
        )
        if close:
            raise QueryError(
                f"unknown programme '{value}'; did you mean: "
                + ", ".join(titles[c] for c in close)
                + "?"
            )
        raise QueryError(f"unknown programme '{value}': no programme id or title matches")


# Building the index normalises every label name (about 8 ms for 1 080 labels), which would
# dominate a served query. A vocabulary that can tell when it changed (``cache_key()``, any
# hashable value, None = don't cache) gets its index reused until then.
_INDEX_CACHE: dict[tuple, _Index] = {}
_INDEX_CACHE_SIZE = 8


def _cached_index(vocabulary: Vocabulary, scene_sets: tuple[str, ...],
                  object_sets: tuple[str, ...]) -> _Index:
    cache_key = getattr(vocabulary, "cache_key", None)
    key = cache_key() if callable(cache_key) else None
    if key is None:
        return _Index(vocabulary, scene_sets, object_sets)
    full = (key, scene_sets, object_sets)
    index = _INDEX_CACHE.get(full)
    if index is None:
        index = _Index(vocabulary, scene_sets, object_sets)
        if len(_INDEX_CACHE) >= _INDEX_CACHE_SIZE:
            _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
        _INDEX_CACHE[full] = index
    return index


def _unknown_label(index: _Index, term: Term, sets: Sequence[str]) -> QueryError:
    where = "" if term.field is None else f" in '{term}' (searched {', '.join(sets)})"
    close = index.suggestions(term.value, sets)
    if close:
        return QueryError(f"unknown label '{term.value}'{where}; did you mean: {', '.join(close)}?")
    if term.field is None:
        return QueryError(
            f"unknown label '{term.value}': it is no label name and no programme title"
            " contains it"
        )
    return QueryError(f"unknown label '{term.value}'{where}")


def resolve_query(
    parsed: ParsedQuery,
    vocabulary: Vocabulary,
    *,
    scene_sets: Sequence[str] = ("places365", "imagenet1k"),
    object_sets: Sequence[str] = ("coco80",),
) -> ResolvedQuery:
    """Map a parsed query onto the store's label ids and programme ids.

    Label names compare case-insensitively with ``_`` and space interchangeable. A term that
    names a label in several of the sets it searches becomes an OR of all of them. A free term
    that names no label but occurs in programme titles becomes a programme filter (added to
    the ``programme:`` alternatives). Unknown labels, sets and programmes raise
    :class:`QueryError` with the closest names as suggestions. Also errors, because the result
    would silently mean something else: a programme-only free term OR-ed with labels
    (``dog OR bikes``), excluding a free term that only names a programme (``-bikes``), and
    a required group whose every label is also excluded (``dog -dog``). Genres are passed
    through unchecked (the vocabulary does not list them).
    """
    index = _cached_index(vocabulary, tuple(scene_sets), tuple(object_sets))
    groups: list[tuple[LabelRef, ...]] = []
    programme_ids: list[str] = []

    for group in parsed.groups:
        refs: list[LabelRef] = []
        title_terms: list[tuple[Term, tuple[str, ...]]] = []
        for term in group:
            sets = index.sets_for(term)
            found = index.labels(term.value, sets)
            if found:
                refs.extend(found)
                continue
            if term.field is None:
                ids = index.programmes_containing(term.value)
                if ids:
                    title_terms.append((term, ids))
                    continue
            raise _unknown_label(index, term, sets)
        if refs and title_terms:
            # A programme filter is ANDed with the label groups, so it cannot stand in for
            # one alternative of an OR; say so rather than silently changing the meaning.
            term, _ = title_terms[0]
            raise QueryError(
                f"'{term.value}' matches no label, only programme titles, so it cannot be"
                f" OR-ed with labels; search it on its own or as programme:\"{term.value}\""
            )
        for _, ids in title_terms:
            programme_ids.extend(ids)
        if refs:
            groups.append(_dedup(refs))

    excluded: list[LabelRef] = []
    for term in parsed.excluded:
        sets = index.sets_for(term)
        found = index.labels(term.value, sets)
        if not found:
            if term.field is None and index.programmes_containing(term.value):
                raise QueryError(
                    f"cannot exclude '-{term.to_query()}': it matches programme titles, not"
                    " labels, and only labels can be excluded"
                )
            raise _unknown_label(index, term, sets)
        excluded.extend(found)
    excluded_set = set(excluded)

    for group in groups:
        if all(ref in excluded_set for ref in group):
            names = " OR ".join(f"{r.label_set}:{r.name}" for r in group)
            raise QueryError(f"{names} is both required and excluded: nothing can match")

    for value in parsed.programmes:
        programme_ids.extend(index.programme_filter(value))

    return ResolvedQuery(
        groups=_dedup(groups),
        excluded=_dedup(excluded),
        programme_ids=_dedup(programme_ids),
        genres=parsed.genres,
        after=parsed.after,
        before=parsed.before,
    )
