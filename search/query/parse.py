"""Parsing: query text -> :class:`~search.query.model.ParsedQuery` (lexer, grammar checks)."""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from search.query.model import (
    FILTER_FIELDS,
    KEYWORDS,
    LABEL_FIELDS,
    ParsedQuery,
    QueryError,
    Term,
    collapse_spaces,
    dedup,
)

DEFAULT_MAX_LENGTH = 1000
# Terms and filters together; OR keywords are not counted. A ceiling keeps the backend's
# query plan (one join/filter per term) bounded whatever an editor pastes in.
DEFAULT_MAX_TERMS = 32
_FIELD_NAME_RE = re.compile(r"[a-z][a-z0-9_]*", re.ASCII)
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
# The ASCII whitespace controls are separators; every other control character is rejected.
_ASCII_SPACE = frozenset(" \t\n\r\f\v")
_SNIPPET = 16
_WINDOW_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(s|m|min)?", re.ASCII)
MAX_WINDOW_S = 3600.0


@dataclass(frozen=True)
class _Token:
    """A lexed item: an ``OR`` keyword, or a (possibly negated, possibly fielded) value."""

    column: int  # 1-based, where the token starts (its '-' if negated)
    raw: str  # the token as typed, for messages
    is_or: bool = False
    keyword: str | None = None  # "then" or "within" (bare, unquoted)
    negated: bool = False
    soft: bool = False  # ~term: prefer without
    field: str | None = None  # as typed
    field_column: int = 0
    value: str = ""
    quoted: bool = False


def _is_space(ch: str) -> bool:
    return ch in _ASCII_SPACE or (ch.isspace() and unicodedata.category(ch) != "Cc")


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
        return collapse_spaces(text[q + 1 : close]), after

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
            soft = text[i] == "~"
            if soft:
                i += 1
                if i == n or _is_space(text[i]) or text[i] in "-~":
                    raise QueryError(
                        f"dangling '~' at column {start + 1}: put the term to avoid right"
                        " after it, like ~object:car",
                        column=start + 1,
                    )
            negated = not soft and text[i] == "-"
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
            word = value.casefold()
            if field is None and not quoted and word in KEYWORDS:
                if negated or soft:
                    raise QueryError(
                        f"'{raw}' at column {start + 1}: {word.upper() if word == 'or' else word}"
                        f" cannot be negated (to exclude the word itself, quote it:"
                        f' {raw[0]}"{value}")',
                        column=start + 1,
                    )
                if word == "or":
                    yield _Token(column=start + 1, raw=raw, is_or=True)
                else:
                    yield _Token(column=start + 1, raw=raw, keyword=word)
                continue
            yield _Token(
                column=start + 1,
                raw=raw,
                negated=negated,
                soft=soft,
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
    then_groups: list[list[Term]] = []
    side = groups  # where required groups go: moment A, or after "then" moment B
    then_tok: _Token | None = None
    within_s: float | None = None
    expect_window: _Token | None = None
    soft_excluded: list[Term] = []
    excluded: list[Term] = []
    programmes: list[str] = []
    genres: list[str] = []
    any_genres: list[str] = []  # anygenre: (catalogue or predicted genres)
    after: datetime.date | None = None
    before: datetime.date | None = None
    after_tok: _Token | None = None
    before_tok: _Token | None = None

    # What the previous token was, so OR can check both of its neighbours.
    prev: _Token | None = None
    pending_or: _Token | None = None
    count = 0

    for tok in _Lexer(text).tokens():
        if expect_window is not None:
            within_s = _parse_window(tok, expect_window)
            prev, expect_window = expect_window, None
            continue
        if tok.keyword is not None:
            if pending_or is not None:
                raise QueryError(
                    f"'{tok.raw}' at column {tok.column} right after OR (column"
                    f" {pending_or.column}): OR needs a term after it",
                    column=tok.column,
                )
            if tok.keyword == "then":
                if then_tok is not None:
                    raise QueryError(
                        f"a second 'then' at column {tok.column}: a query relates two moments"
                        f" (one 'then', at column {then_tok.column})",
                        column=tok.column,
                    )
                if not groups:
                    raise QueryError(
                        f"'then' at column {tok.column} needs a term before it, like"
                        " object:car then object:person",
                        column=tok.column,
                    )
                then_tok, side = tok, then_groups
            else:
                if then_tok is None or not then_groups:
                    raise QueryError(
                        f"'within' at column {tok.column} belongs after 'A then B', like"
                        " object:car then object:person within 30s",
                        column=tok.column,
                    )
                if within_s is not None:
                    raise QueryError(f"a second 'within' at column {tok.column}",
                                     column=tok.column)
                expect_window = tok
            prev = tok
            continue
        if tok.is_or:
            if prev is None:
                raise QueryError(
                    f"OR at column {tok.column} has no term before it", column=tok.column
                )
            if prev.is_or:
                raise QueryError(f"OR repeated at column {tok.column}", column=tok.column)
            if prev.keyword is not None:
                raise QueryError(
                    f"OR at column {tok.column} right after '{prev.raw}': OR joins two terms",
                    column=tok.column,
                )
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
            filt = FILTER_FIELDS.get(name)
            if filt is not None:
                if tok.negated or tok.soft:
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
                    {"programme": programmes, "genre": genres,
                     "anygenre": any_genres}[filt].append(tok.value)
                prev = tok
                continue
            field: str | None = LABEL_FIELDS.get(name, name)
        else:
            field = None

        if not _has_alnum(tok.value):
            raise _no_alnum(tok)
        term = Term(field, tok.value)
        if tok.negated:
            excluded.append(term)
        elif tok.soft:
            soft_excluded.append(term)
        elif pending_or is not None:
            side[-1].append(term)
        else:
            side.append([term])
        pending_or = None
        prev = tok

    if pending_or is not None:
        raise QueryError(
            f"dangling OR at column {pending_or.column}: it needs a term after it",
            column=pending_or.column,
        )
    if expect_window is not None:
        raise QueryError(
            f"'within' at column {expect_window.column} needs a window after it, like within 30s",
            column=expect_window.column,
        )
    if then_tok is not None and not then_groups:
        raise QueryError(
            f"'then' at column {then_tok.column} needs a term after it, like"
            " object:car then object:person",
            column=then_tok.column,
        )
    if after is not None and before is not None and after > before:
        assert after_tok is not None and before_tok is not None
        raise QueryError(
            f"after:{after.isoformat()} is later than before:{before.isoformat()}:"
            " no air date can match",
            column=after_tok.column,
        )

    group_tuples = dedup(dedup(g) for g in groups)
    return ParsedQuery(
        groups=group_tuples,
        excluded=dedup(excluded),
        soft_excluded=tuple(t for t in dedup(soft_excluded) if t not in excluded),
        then_groups=dedup(dedup(g) for g in then_groups),
        within_s=within_s,
        programmes=dedup(programmes),
        genres=dedup(genres),
        any_genres=dedup(any_genres),
        after=after,
        before=before,
    )


def _parse_window(tok: _Token, within: _Token) -> float:
    """The window after ``within``: seconds (``30``, ``30s``, ``2.5s``) or minutes (``2m``)."""
    m = None if (tok.field is not None or tok.quoted or tok.is_or or tok.keyword
                 or tok.negated or tok.soft) else _WINDOW_RE.fullmatch(tok.value)
    if m is None:
        raise QueryError(
            f"'within' at column {within.column} needs a window like 30s or 2m, got"
            f" {tok.raw!r}",
            column=tok.column,
        )
    seconds = float(m.group(1)) * (60.0 if m.group(2) in ("m", "min") else 1.0)
    if not 0 < seconds <= MAX_WINDOW_S:
        raise QueryError(
            f"window {tok.raw!r} at column {tok.column} must be above 0 and at most"
            f" {MAX_WINDOW_S:g}s",
            column=tok.column,
        )
    return seconds


def _no_alnum(tok: _Token) -> QueryError:
    return QueryError(
        f"{tok.raw!r} at column {tok.column} has no letters or digits to search for",
        column=tok.column,
    )


def _check_or_operand(tok: _Token, or_tok: _Token) -> None:
    """``tok`` sits next to an OR: it must be a positive label or free term."""
    if tok.negated or tok.soft:
        raise QueryError(
            f"negated term '{tok.raw}' (column {tok.column}) cannot be part of OR"
            f" (OR at column {or_tok.column})",
            column=tok.column,
        )
    if tok.field is not None and tok.field.lower() in FILTER_FIELDS:
        raise QueryError(
            f"filter '{tok.raw}' (column {tok.column}) cannot be part of OR"
            f" (OR at column {or_tok.column}); repeat programme:/genre: filters instead,"
            " they are alternatives already",
            column=tok.column,
        )
