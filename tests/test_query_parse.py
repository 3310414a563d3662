"""The editors' query language: parsing, errors, hostile input and resolution."""

from __future__ import annotations

import datetime
import json
import random

import pytest

from search.query import (
    DEFAULT_MAX_TERMS,
    LabelRef,
    ParsedQuery,
    QueryError,
    ResolvedQuery,
    Term,
    Vocabulary,
    normalise_label,
    parse_query,
    resolve_query,
)

D = datetime.date


def T(field: str | None, value: str) -> Term:  # capitalised: reads like a constructor
    return Term(field, value)


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------


def test_the_documented_example():
    q = parse_query(
        'object:dog scene:beach -object:car programme:"El gran dictat" after:2020-01-01'
    )
    assert q == ParsedQuery(
        groups=((T("object", "dog"),), (T("scene", "beach"),)),
        excluded=(T("object", "car"),),
        programmes=("El gran dictat",),
        genres=(),
        after=D(2020, 1, 1),
        before=None,
    )


def test_or_groups_and_chains():
    q = parse_query("object:dog OR object:cat scene:beach")
    assert q.groups == ((T("object", "dog"), T("object", "cat")), (T("scene", "beach"),))
    q = parse_query("a OR b or c Or d e")
    assert q.groups == ((T(None, "a"), T(None, "b"), T(None, "c"), T(None, "d")), (T(None, "e"),))
    # Duplicates collapse, inside a group and across identical groups.
    assert parse_query("dog OR dog dog").groups == ((T(None, "dog"),),)


def test_field_names_aliases_and_case():
    q = parse_query("obj:dog OBJECT:Cat Scene:beach LABEL:orange prog:a program:b PROGRAMME:c")
    assert q.groups == (
        (T("object", "dog"),),
        (T("object", "Cat"),),
        (T("scene", "beach"),),
        (T("label", "orange"),),
    )
    assert q.programmes == ("a", "b", "c")


def test_label_set_names_are_fields():
    q = parse_query('coco80:dog PLACES365:beach imagenet1k:"golden retriever" my_set2:x')
    assert q.groups == (
        (T("coco80", "dog"),),
        (T("places365", "beach"),),
        (T("imagenet1k", "golden retriever"),),
        (T("my_set2", "x"),),
    )
    assert [t.kind for g in q.groups for t in g] == ["set"] * 4
    kinds = [g[0].kind for g in parse_query("object:a scene:b label:c d").groups]
    assert kinds == ["object", "scene", "label", "any"]


def test_quoted_phrases_and_free_terms():
    q = parse_query('"golden   retriever"  imagenet1k:"  golden\tretriever " sunset "or"')
    assert q.groups == (
        (T(None, "golden retriever"),),
        (T("imagenet1k", "golden retriever"),),
        (T(None, "sunset"),),
        (T(None, "or"),),  # a quoted "or" is a word, not the keyword
    )


def test_values_with_underscores_slashes_hyphens_apostrophes():
    q = parse_query("places365:arena/hockey scene:dining_room hen-of-the-woods jack-o'-lantern")
    assert [g[0].value for g in q.groups] == [
        "arena/hockey", "dining_room", "hen-of-the-woods", "jack-o'-lantern",
    ]
    # A '-' inside a value is not a negation; one right after the colon is part of the value.
    assert parse_query("object:-x").groups == ((T("object", "-x"),),)


def test_negation():
    q = parse_query('dog -object:car -"fire hydrant" -cat -coco80:person')
    assert q.groups == ((T(None, "dog"),),)
    assert q.excluded == (
        T("object", "car"), T(None, "fire hydrant"), T(None, "cat"), T("coco80", "person"),
    )
    # Only exclusions is a valid (if broad) query.
    assert parse_query("-dog").excluded == (T(None, "dog"),)


def test_soft_exclusion():
    q = parse_query("dog ~object:car ~\"fire hydrant\" -cat ~cat")
    assert q.soft_excluded == (T("object", "car"), T(None, "fire hydrant"))  # -cat wins
    assert q.excluded == (T(None, "cat"),)
    assert q.to_query() == 'dog -cat ~object:car ~"fire hydrant"'
    assert parse_query(q.to_query()) == q
    assert parse_query('"~x"').groups == ((T(None, "~x"),),)  # quoted: a value
    assert T(None, "~x").to_query() == '"~x"'
    for bad, needle in (("dog ~", "dangling '~'"), ("dog ~-car", "dangling '~'"),
                        ("~genre:news", "cannot negate a filter"),
                        ("~dog OR cat", "cannot be part of OR"), ("dog ~or", "cannot be negated")):
        with pytest.raises(QueryError, match=needle):
            parse_query(bad)
    r = _resolve("dog ~orange ~dog")
    assert r.soft_excluded == (ORANGE_C, ORANGE_I, DOG) and r.excluded == ()
    assert r.soft_terms == ("orange", "orange", "dog")


def test_filters():
    q = parse_query(
        'programme:"Bikes" prog:news genre:Sport genre:"Current affairs" genre:Sport'
        " after:2020-01-01 before:2020-12-31"
    )
    assert q.groups == () and q.excluded == ()
    assert q.programmes == ("Bikes", "news")
    assert q.genres == ("Sport", "Current affairs")
    assert (q.after, q.before) == (D(2020, 1, 1), D(2020, 12, 31))
    # Inclusive bounds: the same day on both sides is one day, not an error.
    assert parse_query("after:2021-05-05 before:2021-05-05").after == D(2021, 5, 5)
    # Repeated bounds must all hold: the tightest one is kept.
    q = parse_query("after:2019-01-01 after:2020-06-01 before:2022-01-01 before:2021-01-01")
    assert (q.after, q.before) == (D(2020, 6, 1), D(2021, 1, 1))
    assert parse_query('after:"2020-01-01"').after == D(2020, 1, 1)


def test_whitespace_kinds_separate_terms():
    q = parse_query("dog\tcat\nbeach\u00a0sea\u3000sky")
    assert [g[0].value for g in q.groups] == ["dog", "cat", "beach", "sea", "sky"]


def test_structures_are_hashable_json_and_round_trip():
    q = parse_query(
        'object:dog OR "golden retriever" -car prog:"El gran dictat" genre:news'
        ' after:2020-01-01 before:2021-01-01 "or" "-x" label:"a:b"'
    )
    assert hash(q) == hash(parse_query(q.to_query()))
    assert parse_query(q.to_query()) == q
    d = json.loads(json.dumps(q.to_dict()))
    assert d["groups"][0] == [
        {"field": "object", "kind": "object", "value": "dog"},
        {"field": None, "kind": "any", "value": "golden retriever"},
    ]
    assert d["after"] == "2020-01-01" and d["programmes"] == ["El gran dictat"]
    assert str(T(None, "golden retriever")) == '"golden retriever"'


def test_term_cap():
    ok = " ".join(f"t{i}" for i in range(DEFAULT_MAX_TERMS))
    assert len(parse_query(ok).groups) == DEFAULT_MAX_TERMS
    with pytest.raises(QueryError, match=r"too many terms: more than 32 \(limit 32\)"):
        parse_query(ok + " one_more")
    with pytest.raises(QueryError, match="too many terms"):
        parse_query("a b c", max_terms=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty query"),
        ("  \t\n ", "empty query"),
        ('programme:"El gran dictat', 'unbalanced quote: "El gran dictat (opened at column 11)'),
        ('dog "golden retriever', "(opened at column 5)"),
        ("object:", "empty value after 'object:'"),
        ('object:""', "empty value after 'object:'"),
        ('programme:"  "', "empty value after 'programme:'"),
        ("object: dog", "no space after ':'"),
        ('""', "empty quoted phrase at column 1"),
        ("-programme:x", "cannot negate a filter: '-programme:x'"),
        ("-genre:news", "cannot negate a filter"),
        ("dog -after:2020-01-01", "cannot negate a filter"),
        ("OR dog", "OR at column 1 has no term before it"),
        ("OR", "has no term before it"),
        ("dog OR", "dangling OR at column 5"),
        ("dog OR OR cat", "OR repeated at column 8"),
        ("dog OR -cat", "negated term '-cat' (column 8) cannot be part of OR"),
        ("-cat OR dog", "negated term '-cat' (column 1) cannot be part of OR"),
        ("dog OR programme:x", "filter 'programme:x' (column 8) cannot be part of OR"),
        ("after:2020-01-01 OR dog", "cannot be part of OR"),
        ("-or", "OR cannot be negated"),
        ("after:2020-13-01", "bad date '2020-13-01' in 'after:'"),
        ("before:yesterday", "bad date 'yesterday' in 'before:'"),
        ("after:2020-1-1", "expected YYYY-MM-DD"),
        ("after:0000-01-01", "bad date"),
        ("after:2021-01-01 before:2020-01-01", "after:2021-01-01 is later than before:2020-01-01"),
        ("-", "dangling '-' at column 1"),
        ("dog -", "dangling '-' at column 5"),
        ("- -dog", "dangling '-'"),
        ("--dog", "double '-'"),
        ("a:b:c", "unexpected ':' at column 4"),
        ("::::", "missing field name before ':' at column 1"),
        (":dog", "missing field name"),
        ("12:30", "invalid field name '12'"),
        ("café:x", "invalid field name 'café'"),
        ('do"g', "unexpected quote at column 3"),
        ('object:do"g', "unexpected quote at column 10"),
        ('"a"b', "right after the closing quote"),
        ("'; DROP TABLE shots; --", "\"';\" at column 1 has no letters or digits"),
        ("...", "no letters or digits"),
        ("genre:--", "no letters or digits"),
        ("dog\x00cat", "control character U+0000 at column 4"),
        ("\x07", "control character U+0007"),
        ("dog \x85", "control character U+0085"),
        ("dog \ud800", "lone surrogate"),
        ("x" * 10_000, "query too long: 10000 characters (limit 1000)"),
    ],
)
def test_errors_are_query_errors_with_helpful_messages(text: str, message: str):
    with pytest.raises(QueryError) as err:
        parse_query(text)
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_error_column_and_custom_length_limit():
    with pytest.raises(QueryError) as err:
        parse_query('dog programme:"open')
    assert err.value.column == 15
    with pytest.raises(QueryError, match=r"query too long: 7 characters \(limit 5\)"):
        parse_query("dog cat", max_length=5)
    with pytest.raises(TypeError):
        parse_query(None)  # type: ignore[arg-type]


def test_sql_looking_text_is_just_words():
    # Documented behaviour: SQL is not special. Words parse as free terms (the backend binds
    # them as parameters); pure punctuation such as "';" is rejected.
    q = parse_query("DROP TABLE shots")
    assert q.groups == ((T(None, "DROP"),), (T(None, "TABLE"),), (T(None, "shots"),))
    assert parse_query("robert');").groups == ((T(None, "robert');"),),)
    for _ in range(3):  # deterministic
        with pytest.raises(QueryError, match="no letters or digits"):
            parse_query("'; DROP TABLE shots; --")


def test_long_and_repetitive_input_fails_fast():
    with pytest.raises(QueryError, match="too many terms"):
        parse_query("dog OR " * 20_000 + "dog", max_length=10**6)
    with pytest.raises(QueryError, match="OR repeated"):
        parse_query("dog " + "OR " * 20_000 + "cat", max_length=10**6)
    with pytest.raises(QueryError, match="unbalanced quote"):
        parse_query('"' + "a " * 100_000, max_length=10**6)
    with pytest.raises(QueryError, match="query too long"):
        parse_query("a OR " * 2_000)


_PIECES = [
    '"', '"', ":", ":", "-", "-", " ", " ", " ", "\t", "\n", "OR", "or", "Or", "object", "obj",
    "scene", "label", "coco80", "places365", "imagenet1k", "programme", "prog", "genre",
    "after", "before", "2020-01-01", "2020-13-45", "dog", "cat", "beach", "orange", "bikes",
    "gran", "_", "/", "'", ";", "\\", "(", ")", "é", "ß", "İ", "中文", "🐶", "\u200b", "\u00a0",
    "\u3000", "\x00", "\x07", "\x1b", "\x85", "\ufeff", "\ud800", "\U0010ffff", "--", "''",
    "DROP", "TABLE", "*", "%", "0", "9", "~", "then", "THEN", "within", "30s", "2m",
]


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.2:  # raw unicode soup, surrogates and controls included
        return "".join(chr(rng.randrange(0, 0x110000)) for _ in range(rng.randrange(0, 40)))
    return "".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 25)))


def test_fuzz_only_query_errors_or_parsed_queries():
    rng = random.Random(20240601)
    vocab = _vocab()
    parsed_count = 0
    for _ in range(4000):
        text = _random_text(rng)
        try:
            q = parse_query(text)
        except QueryError as e:
            assert str(e)  # every error has a message
            continue
        parsed_count += 1
        assert isinstance(q, ParsedQuery)
        hash(q)
        json.dumps(q.to_dict())
        assert parse_query(q.to_query(), max_length=10**6) == q
        assert parse_query(text) == q  # deterministic
        try:
            r = resolve_query(q, vocab)
        except QueryError:
            continue
        assert isinstance(r, ResolvedQuery)
        json.dumps(r.to_dict())
    assert parsed_count > 200  # the generator does reach the happy path


# ----------------------------------------------------------------------------------------------
# Resolution
# ----------------------------------------------------------------------------------------------


class _Vocab:
    """A tiny in-memory :class:`Vocabulary`."""

    def __init__(self, sets: dict[str, list[tuple[int, str]]] | None = None) -> None:
        self.sets = sets if sets is not None else {
            "coco80": [
                (0, "person"), (1, "bicycle"), (2, "car"), (15, "cat"), (16, "dog"),
                (49, "orange"), (60, "dining table"),
            ],
            "places365": [(10, "arena/hockey"), (48, "beach"), (121, "dining_room"),
                          (203, "kitchen")],
            "imagenet1k": [
                (207, "golden retriever"), (444, "bicycle-built-for-two"), (607, "jack-o'-lantern"),
                (870, "tricycle"), (950, "orange"), (978, "seashore"), (996, "hen-of-the-woods"),
            ],
        }

    def label_sets(self) -> dict[str, list[tuple[int, str]]]:
        return self.sets

    def programme_titles(self) -> list[tuple[str, str]]:
        return [("p-bikes", "Bikes"), ("p-dictat", "El gran dictat")]


def _vocab(**kw) -> _Vocab:
    return _Vocab(**kw)


def _resolve(text: str, **kw) -> ResolvedQuery:
    return resolve_query(parse_query(text), _vocab(), **kw)


DOG = LabelRef(16, "coco80", "dog")
CAT = LabelRef(15, "coco80", "cat")
CAR = LabelRef(2, "coco80", "car")
BEACH = LabelRef(48, "places365", "beach")
ORANGE_C = LabelRef(49, "coco80", "orange")
ORANGE_I = LabelRef(950, "imagenet1k", "orange")


def test_vocabulary_protocol():
    assert isinstance(_vocab(), Vocabulary)


def test_resolve_the_documented_example():
    r = _resolve('object:dog scene:beach -object:car programme:"El gran dictat" after:2020-01-01')
    assert r == ResolvedQuery(
        groups=((DOG,), (BEACH,)),
        excluded=(CAR,),
        programme_ids=("p-dictat",),
        genres=(),
        after=D(2020, 1, 1),
        before=None,
    )
    d = json.loads(json.dumps(r.to_dict()))
    assert d["groups"][0] == [{"label_id": 16, "label_set": "coco80", "name": "dog"}]
    assert d["after"] == "2020-01-01" and d["programme_ids"] == ["p-dictat"]


def test_resolve_or_groups():
    r = _resolve("object:dog OR object:cat scene:beach")
    assert r.groups == ((DOG, CAT), (BEACH,))


def test_field_decides_the_sets_searched():
    assert _resolve("object:orange").groups == ((ORANGE_C,),)
    assert _resolve("label:orange").groups == ((ORANGE_C, ORANGE_I),)
    assert _resolve("orange").groups == ((ORANGE_C, ORANGE_I),)
    assert _resolve("imagenet1k:orange").groups == ((ORANGE_I,),)
    assert _resolve("scene:seashore").groups == ((LabelRef(978, "imagenet1k", "seashore"),),)
    with pytest.raises(QueryError, match="unknown label 'seashore'"):
        _resolve("scene:seashore", scene_sets=("places365",))
    # imagenet1k stands in for Places365, but only its classes that are places answer scene:
    with pytest.raises(QueryError, match=r"unknown label 'orange' in 'scene:orange'"):
        _resolve("scene:orange")
    with pytest.raises(QueryError) as err:
        _resolve("scene:seashor")
    assert "seashore" in err.value.suggestions
    with pytest.raises(QueryError) as err:
        _resolve("scene:orang")  # suggestions come from the places only
    assert "orange" not in err.value.suggestions
    with pytest.raises(QueryError) as err:
        _resolve("imagenet1k:orang")
    assert "orange" in err.value.suggestions
    with pytest.raises(QueryError, match=r"unknown label 'dog' in 'scene:dog' \(searched "
                                         r"places365, imagenet1k\)"):
        _resolve("scene:dog")


def test_names_match_case_and_underscore_insensitively():
    table = LabelRef(60, "coco80", "dining table")
    room = LabelRef(121, "places365", "dining_room")
    assert _resolve('"dining table" OR dining_table OR Dining_Table').groups == ((table,),)
    assert _resolve('scene:"Dining  Room"').groups == ((room,),)
    assert _resolve("places365:ARENA/hockey hen-of-the-woods jack-o'-lantern").groups == (
        (LabelRef(10, "places365", "arena/hockey"),),
        (LabelRef(996, "imagenet1k", "hen-of-the-woods"),),
        (LabelRef(607, "imagenet1k", "jack-o'-lantern"),),
    )
    assert normalise_label(" Dining__Table ") == "dining table"


def test_free_terms_fall_back_to_programme_titles():
    r = _resolve("bikes")
    assert r.groups == () and r.programme_ids == ("p-bikes",)
    r = _resolve("dog gran")
    assert r.groups == ((DOG,),) and r.programme_ids == ("p-dictat",)
    # Alternatives that are all programmes are programme alternatives.
    assert _resolve("bikes OR dictat").programme_ids == ("p-bikes", "p-dictat")
    # ...but a programme cannot be one alternative among labels.
    with pytest.raises(QueryError, match="'bikes' matches no label, only programme titles"):
        _resolve("dog OR bikes")


def test_programme_filters():
    assert _resolve('programme:"Bikes"') == ResolvedQuery(programme_ids=("p-bikes",))
    assert _resolve("prog:p-dictat").programme_ids == ("p-dictat",)
    assert _resolve("programme:BIKES programme:dictat").programme_ids == ("p-bikes", "p-dictat")
    with pytest.raises(QueryError, match=r"unknown programme 'Bkes'; did you mean: Bikes\?"):
        _resolve("programme:Bkes")
    with pytest.raises(QueryError, match="unknown programme 'zzzz': no programme id or title"):
        _resolve("programme:zzzz")


def test_filters_pass_through():
    r = _resolve("dog genre:Sport after:2020-01-01 before:2020-02-01")
    assert r.genres == ("Sport",)
    assert (r.after, r.before) == (D(2020, 1, 1), D(2020, 2, 1))


def test_unknown_labels_suggest_close_names():
    with pytest.raises(QueryError, match=r"unknown label 'bycicle'; did you mean: bicycle, "
                                         r"tricycle\?"):
        _resolve("bycicle")
    # object: only suggests from the object sets (no imagenet1k 'tricycle').
    with pytest.raises(QueryError) as err:
        _resolve("object:bycicle")
    msg = str(err.value)
    assert "unknown label 'bycicle' in 'object:bycicle' (searched coco80)" in msg
    assert "did you mean: bicycle?" in msg and "tricycle" not in msg
    with pytest.raises(QueryError, match="it is no label name and no programme title"):
        _resolve("qqqqqq")
    with pytest.raises(QueryError, match=r"unknown label 'dgo'.*did you mean: dog"):
        _resolve("-dgo")


def test_unknown_label_sets():
    with pytest.raises(QueryError) as err:
        _resolve("coco81:dog")
    msg = str(err.value)
    assert "unknown label set 'coco81'" in msg
    assert "available sets: coco80, imagenet1k, places365" in msg
    assert "did you mean: coco80" in msg
    with pytest.raises(QueryError, match="did you mean: object"):
        _resolve("objects:dog")


def test_missing_object_or_scene_sets():
    vocab = _vocab(sets={"coco80": [(16, "dog")]})
    with pytest.raises(QueryError, match="no scene label set in the vocabulary"):
        resolve_query(parse_query("scene:beach"), vocab)
    assert resolve_query(parse_query("object:dog"), vocab).groups == ((DOG,),)


def test_exclusions():
    r = _resolve("dog -orange -scene:beach")
    assert r.excluded == (ORANGE_C, ORANGE_I, BEACH)
    assert _resolve("dog OR cat -dog").groups == ((DOG, CAT),)
    with pytest.raises(QueryError, match="both required and excluded"):
        _resolve("dog -object:dog")
    with pytest.raises(QueryError, match="only labels can be excluded"):
        _resolve("dog -bikes")
