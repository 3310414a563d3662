"""Resolution: a parsed query -> store label ids and programme ids
(:class:`~search.query.model.ResolvedQuery`), against a :class:`~search.query.model.Vocabulary`."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from search.query.model import (
    FILTER_FIELDS,
    LABEL_FIELDS,
    WORD_FIELD_ALIASES,
    WORD_FIELDS,
    LabelRef,
    ParsedQuery,
    QueryError,
    ResolvedQuery,
    Term,
    Vocabulary,
    WordRef,
    collapse_spaces,
    dedup,
)
from tvindex.core.labels import ROLES, label_role, sets_with_role

# What ``object:`` and ``scene:`` search unless the caller says otherwise: the label sets whose
# role (tvindex.core.labels) is object / scene, in ROLES order (a term's labels come out in that order).
OBJECT_SETS: tuple[str, ...] = sets_with_role(ROLES, "object")
SCENE_SETS: tuple[str, ...] = sets_with_role(ROLES, "scene")
_MAX_SUGGESTIONS = 5
# difflib's default (0.6) drops plausible typo targets such as 'tricycle' for 'bycicle' (0.53).
_SUGGESTION_CUTOFF = 0.5


def normalise_label(name: str) -> str:
    """The form label names are compared in: case-folded, ``_`` as space, spaces collapsed."""
    return collapse_spaces(name.replace("_", " ").casefold())


def _normalise_title(title: str) -> str:
    return collapse_spaces(title.casefold())


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
        return dedup(s for s in found if s is not None)

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
            choices = sorted(set(self.set_names) | set(LABEL_FIELDS) | set(FILTER_FIELDS))
            close = difflib.get_close_matches(term.field, choices, n=3)
            hint = f"; did you mean: {', '.join(close)}?" if close else ""
            raise QueryError(
                f"unknown label set '{term.field}' in '{term}'; available sets:"
                f" {', '.join(self.all_sets) or 'none'}{hint}",
                code="unknown_label", suggestions=close, term=term.field,
            )
        return (actual,)

    def labels(self, value: str, sets: Sequence[str], field: str | None = None
               ) -> tuple[LabelRef, ...]:
        """The labels named ``value`` in ``sets``; for ``scene:`` only those that are places
        (``tvindex.core.labels.label_role``: ImageNet's objects are no scenes)."""
        key = normalise_label(value)
        refs = (ref for s in sets for ref in self.by_name[s].get(key, ()))
        if field == "scene":
            refs = (r for r in refs if label_role(r.label_set, r.name) == "scene")
        return dedup(refs)

    def suggestions(self, value: str, sets: Sequence[str], field: str | None = None
                    ) -> list[str]:
        display: dict[str, str] = {}
        for s in sets:
            for key, name in self.display[s].items():
                if field != "scene" or label_role(s, name) == "scene":
                    display.setdefault(key, name)
        close = difflib.get_close_matches(
            normalise_label(value), list(display), n=_MAX_SUGGESTIONS, cutoff=_SUGGESTION_CUTOFF
        )
        return [display[c] for c in close]

    def programmes_containing(self, value: str) -> tuple[str, ...]:
        needle = _normalise_title(value)
        return dedup(pid for pid, title in self.programmes if needle in _normalise_title(title))

    def programme_filter(self, value: str) -> tuple[str, ...]:
        """Exact id, else exact title (case-insensitive), else title substring."""
        ids = dedup(pid for pid, _ in self.programmes if pid == value)
        if ids:
            return ids
        needle = _normalise_title(value)
        ids = dedup(pid for pid, title in self.programmes if _normalise_title(title) == needle)
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
                + "?",
                code="unknown_programme", suggestions=[titles[c] for c in close], term=value,
            )
        raise QueryError(f"unknown programme '{value}': no programme id or title matches",
                         code="unknown_programme", term=value)


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
    close = index.suggestions(term.value, sets, term.field)
    structured: dict = {"code": "unknown_label", "suggestions": close, "term": term.value}
    if close:
        return QueryError(f"unknown label '{term.value}'{where}; did you mean: {', '.join(close)}?",
                          **structured)
    if term.field is None:
        return QueryError(
            f"unknown label '{term.value}': it is no label name and no programme title"
            " contains it",
            **structured,
        )
    return QueryError(f"unknown label '{term.value}'{where}", **structured)


def _resolve_groups(index: _Index, parsed_groups: Sequence[tuple[Term, ...]],
                    programme_ids: list[str]
                    ) -> tuple[tuple[tuple[LabelRef, ...], ...], tuple[str, ...]]:
    """Required groups as label refs (deduplicated) and each group's query text; free terms
    that only name programmes go to ``programme_ids``."""
    groups: dict[tuple[LabelRef, ...], str] = {}
    for group in parsed_groups:
        refs: list[LabelRef] = []
        title_terms: list[tuple[Term, tuple[str, ...]]] = []
        for term in group:
            sets = index.sets_for(term)
            found = index.labels(term.value, sets, term.field)
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
            groups.setdefault(dedup(refs), " OR ".join(t.to_query() for t in group))
    return tuple(groups), tuple(groups.values())


def _resolve_excluded(index: _Index, terms: Sequence[Term], soft: bool = False
                      ) -> tuple[tuple[LabelRef, ...], tuple[str, ...]]:
    """Excluded labels (deduplicated) and, for each, the query text of its term."""
    out: dict[LabelRef, str] = {}
    for term in terms:
        sets = index.sets_for(term)
        found = index.labels(term.value, sets, term.field)
        if not found:
            if term.field is None and index.programmes_containing(term.value):
                raise QueryError(
                    f"cannot {'avoid' if soft else 'exclude'} '{'~' if soft else '-'}"
                    f"{term.to_query()}': it matches programme titles, not labels, and only"
                    " labels can be excluded"
                )
            raise _unknown_label(index, term, sets)
        for ref in found:
            out.setdefault(ref, term.to_query())
    return tuple(out), tuple(out.values())


def _split_words(groups: Sequence[tuple[Term, ...]], excluded: Sequence[Term],
                 no_words: Sequence[tuple[str, Sequence[Term]]]
                 ) -> tuple[list[tuple[Term, ...]], list[Term], tuple[tuple[WordRef, ...], ...],
                            tuple[WordRef, ...]]:
    """Word terms (``said:``, ``screen:``, ``subtitle:``, ``text:``; issue 17) apart from the
    label terms: (label groups, label exclusions, word groups, word exclusions). A group
    cannot mix the two; ``no_words``: (what, terms) where word terms are not accepted."""
    def ref(term: Term) -> WordRef:
        field = WORD_FIELD_ALIASES[term.field or ""]
        return WordRef(field, WORD_FIELDS[field], term.value)

    label_groups, word_groups = [], []
    for group in groups:
        words = [t for t in group if t.kind == "words"]
        if words and len(words) != len(group):
            raise QueryError(f"'{' OR '.join(t.to_query() for t in group)}': word terms and "
                             "labels cannot be OR-ed together; search them as separate terms")
        if words:
            word_groups.append(dedup(ref(t) for t in words))
        else:
            label_groups.append(group)
    for what, terms in no_words:
        for t in terms:
            if t.kind == "words":
                raise QueryError(f"'{t.to_query()}': word terms cannot be used {what}")
    return (label_groups, [t for t in excluded if t.kind != "words"], dedup(word_groups),
            dedup(ref(t) for t in excluded if t.kind == "words"))


def _split_visual(parsed: ParsedQuery) -> tuple[list[tuple[Term, ...]], tuple[str, ...]]:
    """``visual:`` terms apart from the others: (the other required groups, the visual texts).
    A visual term stands alone: required, not OR-ed, not excluded, not in a temporal query
    (its answer is a set of nearest shots, with nothing to OR, exclude or pair)."""
    groups, texts = [], []
    for group in parsed.groups:
        visual = [t for t in group if t.kind == "visual"]
        if visual and len(group) > 1:
            raise QueryError(f"'{' OR '.join(t.to_query() for t in group)}': visual: terms "
                             "cannot be OR-ed; search them as separate terms")
        if visual:
            texts.append(collapse_spaces(visual[0].value))
        else:
            groups.append(group)
    for what, terms in (("with - (exclusion)", parsed.excluded),
                        ("with ~ (soft exclusion)", parsed.soft_excluded),
                        ("after 'then'", [t for g in parsed.then_groups for t in g])):
        for t in terms:
            if t.kind == "visual":
                raise QueryError(f"'{t.to_query()}': visual: terms cannot be used {what}")
    if texts and parsed.then_groups:
        raise QueryError("visual: terms cannot be used in an 'A then B' query")
    return groups, dedup(texts)


def resolve_query(
    parsed: ParsedQuery,
    vocabulary: Vocabulary,
    *,
    scene_sets: Sequence[str] = SCENE_SETS,
    object_sets: Sequence[str] = OBJECT_SETS,
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
    programme_ids: list[str] = []
    other_groups, visual_terms = _split_visual(parsed)
    label_groups, label_excluded, word_groups, word_excluded = _split_words(
        other_groups, parsed.excluded,
        [("with ~ (soft exclusion)", parsed.soft_excluded)])
    then_label_groups, _, then_word_groups, _ = _split_words(parsed.then_groups, (), ())
    groups, group_terms = _resolve_groups(index, label_groups, programme_ids)
    then_groups, then_terms = _resolve_groups(index, then_label_groups, programme_ids)
    excluded, excluded_terms = _resolve_excluded(index, label_excluded)
    soft, soft_terms = _resolve_excluded(index, parsed.soft_excluded, soft=True)
    excluded_set = set(excluded)
    kept = [i for i, ref in enumerate(soft) if ref not in excluded_set]
    soft, soft_terms = tuple(soft[i] for i in kept), tuple(soft_terms[i] for i in kept)

    for group in groups + then_groups:
        if all(ref in excluded_set for ref in group):
            names = " OR ".join(f"{r.label_set}:{r.name}" for r in group)
            raise QueryError(f"{names} is both required and excluded: nothing can match")

    for value in parsed.programmes:
        programme_ids.extend(index.programme_filter(value))

    return ResolvedQuery(
        groups=groups,
        excluded=excluded,
        soft_excluded=soft,
        group_terms=group_terms,
        excluded_terms=excluded_terms,
        soft_terms=soft_terms,
        then_groups=then_groups,
        then_terms=then_terms,
        within_s=parsed.within_s,
        word_groups=word_groups,
        word_excluded=word_excluded,
        then_word_groups=then_word_groups,
        programme_ids=dedup(programme_ids),
        genres=parsed.genres,
        any_genres=parsed.any_genres,
        after=parsed.after,
        before=parsed.before,
        visual_terms=visual_terms,
    )
