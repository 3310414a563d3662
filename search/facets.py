"""Facets of a search (issue 15): how ALL the items a query matches (not one page) spread
over programmes, catalogue genres, air years and the labels present in them.

Every backend's ``facets(query, level, size, *, min_score)`` answers
``{"programme": [(programme id, n)], "genre": [(genre, n)], "year": [("2021", n)],
"label": [("set:name", n)]}``: each list by count (largest first), ties by value, at most
``size`` entries. The rules, the same for SQLite and Elasticsearch:

* ``programme``: matched items per programme (a programme-level item counts for itself);
* ``genre``: matched items whose programme's catalogue genres hold the genre (a genre value
  is split with ``tvindex.core.genres.split_genres``: an item may count for several);
* ``year``: matched items per air year of their episode (a programme counts once for each year
  in which one of its indexed episodes aired, as ``after:``/``before:`` match programmes);
  items without an air date count nowhere;
* ``label``: matched items in which the label is *present* (the rule of ``search.ranking``),
  the query's own required labels left out.

Clicking a facet narrows the query (:func:`narrow`): ``programme:ID``, ``genre:X``,
``after:Y-01-01 before:Y-12-31`` or the label term; the narrowed total is the facet's count
(with ``min_score`` 0: a label term added changes every score, so a floor may drop more).

This module is the front door the CLI and the API call (:func:`run_facets`); the backends
compute the counts (``search/backends/sqlite/facets.py``, ``.../elasticsearch/search.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from search.engine import resolve
from search.query.model import Term
from tvindex.core.store import CatalogueStore, StoreError

FACETS = ("programme", "genre", "year", "label")
DEFAULT_SIZE = 10
MAX_SIZE = 100
FacetCounts = dict[str, list[tuple[str, int]]]


def parse_facets(value: str | bool | None) -> tuple[str, ...]:
    """``facets=`` as given to the API or CLI: empty/0/false: none; 1/true/all: every facet;
    else a comma-separated subset of :data:`FACETS`. Raises StoreError naming a bad one."""
    if value is None or value is False:
        return ()
    text = "1" if value is True else str(value).strip().lower()
    if text in ("", "0", "false", "no", "none"):
        return ()
    if text in ("1", "true", "yes", "all"):
        return FACETS
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [n for n in names if n not in FACETS]
    if bad:
        raise StoreError(f"unknown facet {bad[0]!r}: use {', '.join(FACETS)} (or 1 for all)")
    return tuple(n for n in FACETS if n in names)


def top_counts(counts: Mapping[str, int] | Iterable[tuple[str, int]], size: int
               ) -> list[tuple[str, int]]:
    """Non-zero counts by count (largest first), ties by value, at most ``size``."""
    items = counts.items() if isinstance(counts, Mapping) else counts
    out = [(str(k), int(n)) for k, n in items if n > 0]
    out.sort(key=lambda kv: (-kv[1], kv[0]))
    return out[:size]


def own_labels(query: Any) -> set[int]:
    """Label ids of the query's required groups (left out of the label facet)."""
    return {ref.label_id for group in query.groups for ref in group}


def _quote(value: str) -> str:
    return Term("x", value).to_query()[2:]


def narrow(text: str, facet: str, value: str) -> str:
    """The query ``text`` narrowed to one facet value."""
    if facet == "programme":
        term = f"programme:{_quote(value)}"
    elif facet == "genre":
        term = f"genre:{_quote(value)}"
    elif facet == "year":
        term = f"after:{value}-01-01 before:{value}-12-31"
    elif facet == "label":
        label_set, _, name = value.partition(":")
        term = Term(label_set, name).to_query()
    else:
        raise StoreError(f"unknown facet {facet!r}")
    return f"{text.strip()} {term}".strip()


def run_facets(store: CatalogueStore, text: str, level: str = "shot",
               names: Iterable[str] = FACETS, *, size: int = DEFAULT_SIZE,
               min_score: float = 0.0) -> dict[str, list[dict[str, Any]]]:
    """The facets of a query as the API and CLI show them: per facet a list of
    ``{"value", "count", "query"}`` (``query``: the narrowed query text; programmes also
    carry their ``title``). ``A then B`` queries have no facets (StoreError)."""
    names = tuple(names)
    if not names:
        return {}
    if not 1 <= size <= MAX_SIZE:
        raise StoreError(f"facet size must be between 1 and {MAX_SIZE}, got {size}")
    query = resolve(store, text)
    if getattr(query, "temporal", False):
        raise StoreError("facets are not computed for 'A then B' queries")
    if getattr(query, "word_groups", ()) or getattr(query, "word_excluded", ()):
        raise StoreError("facets are not computed for word terms (said:, screen:, ...)")
    if getattr(query, "visual_terms", ()):
        raise StoreError("facets are not computed for visual: terms")
    facets = getattr(store, "facets", None)
    if facets is None:
        raise StoreError(f"the {store.backend or 'this'} backend does not compute facets")
    counts: FacetCounts = facets(query, level, size, min_score=float(min_score))
    titles = dict(store.programme_titles()) if "programme" in names else {}
    out: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        rows = []
        for value, count in counts.get(name, []):
            row: dict[str, Any] = {"value": value, "count": count,
                                   "query": narrow(text, name, value)}
            if name == "programme":
                row["title"] = titles.get(value, value)
            rows.append(row)
        out[name] = rows
    return out
