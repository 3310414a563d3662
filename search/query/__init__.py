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

Modules: :mod:`~search.query.model` (the data structures and ``QueryError``),
:mod:`~search.query.parse` (lexer and grammar) and :mod:`~search.query.resolution` (terms onto
a vocabulary; which sets ``object:`` and ``scene:`` search follows the label sets' role).
"""

from search.query.model import (
    LabelRef,
    ParsedQuery,
    QueryError,
    ResolvedQuery,
    Term,
    Vocabulary,
)
from search.query.parse import DEFAULT_MAX_LENGTH, DEFAULT_MAX_TERMS, parse_query
from search.query.resolution import normalise_label, resolve_query

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
