"""Word terms in searches (issue 17): ``said:``, ``screen:``, ``subtitle:``, ``text:`` with
accents folded, stems (ca/es/en), phrases, combined with labels and filters, excluded, at
every level, with highlighted snippets; the same hits on every backend.

The catalogue is written through the store (labels as ``EpisodeTags``, words as
``EpisodeWords``); no media, no models.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from search.backends.sqlite.store import SqliteStore
from search.engine import resolve, run_search
from search.query import QueryError, parse_query
from search.words import BM25_K, WordMatch, fold, highlight, normalise_score, stems
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.store import CatalogueStore, StoreError
from tvindex.core.words import EpisodeWords, TextSegment

BACKENDS = ("sqlite", "elasticsearch")
OBJ = LabelSet("coco80", "sigmoid", ("person", "dog", "car", "bicycle"))
PERSON, DOG, CAR = [0.9, 0, 0, 0], [0, 0.9, 0, 0], [0, 0, 0.9, 0]


def episode_tags(eid: str, objs: list[list[float]]) -> EpisodeTags:
    segments = [SegmentTags(i, 5.0 * i, 5.0 * i + 5, 5.0 * i + 2.5,
                            {"coco80": aggregate(np.array([o], np.float32), 0.5)})
                for i, o in enumerate(objs)]
    stats = {"coco80": aggregate(np.array(objs, np.float32), 0.5)}
    return EpisodeTags(eid, f"fp-{eid}", "v1", 5.0 * len(objs), segments, stats, "shots")


def seg(source: str, a: float, b: float, text: str, language: str | None) -> TextSegment:
    return TextSegment(a, b, source, text, language, 0.9)


WORDS = {
    ("n1", "speech"): [seg("speech", 6.0, 8.0, "Obrim el pavelló municipal", "ca")],
    ("n1", "screen"): [seg("screen", 0.0, 4.0, "Núria Puigcercós · alcaldessa de Girona",
                           None)],
    ("n1", "subtitles"): [seg("subtitles", 11.0, 13.0, "Parlen les alcaldesses", "ca")],
    ("d1", "speech"): [seg("speech", 1.0, 4.0, "The dogs were running along the beach", "en"),
                       seg("speech", 6.0, 9.0, "We open the new sports hall today", "en")],
    ("d1", "subtitles"): [seg("subtitles", 6.0, 9.0, "We open the new sports hall today",
                              "en")],
    ("d2", "speech"): [seg("speech", 0.0, 3.0, "Las ciudades están corriendo", "es")],
    ("d2", "screen"): [seg("screen", 1.0, 2.0, "Alcaldesa de Madrid <b>&</b>", None)],
}


def build(store: CatalogueStore) -> CatalogueStore:
    store.upsert_catalogue(
        [ProgrammeRecord("news", "Notícies", genre="news"),
         ProgrammeRecord("docs", "Documentaries", genre="nature")],
        [EpisodeRecord("n1", "news", "Dilluns", "/m/n1.mp4", dt.date(2024, 1, 8)),
         EpisodeRecord("d1", "docs", "Dogs", "/m/d1.mp4", dt.date(2020, 1, 1)),
         EpisodeRecord("d2", "docs", "Ciudades", "/m/d2.mp4", dt.date(2021, 1, 1))])
    store.register_label_sets([OBJ])
    store.write_episode(episode_tags("n1", [PERSON, DOG, CAR]))
    store.write_episode(episode_tags("d1", [DOG, PERSON]))
    store.write_episode(episode_tags("d2", [PERSON]))
    for (eid, source), segments in WORDS.items():
        store.write_words(EpisodeWords(eid, source, "v1", segments))
    return store


def open_store(backend: str, folder: Path, es_server: object | None = None
               ) -> CatalogueStore:
    if backend == "sqlite":
        return SqliteStore(folder / "cat.sqlite", top_k=0)
    from es_server import SESSION, delete_prefix

    from search.backends.elasticsearch.store import EsStore

    cfg = es_server.config(f"tvt-{SESSION}-{uuid.uuid4().hex[:8]}-")  # type: ignore[union-attr]
    store = EsStore(cfg, top_k=0)
    store._cleanup = lambda: delete_prefix(cfg)  # type: ignore[attr-defined]
    return store


def close_store(store: CatalogueStore) -> None:
    store.close()
    getattr(store, "_cleanup", lambda: None)()


@pytest.fixture(scope="module", params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[CatalogueStore]:
    """The catalogue, built once per backend for the tests that only read it."""
    server = request.getfixturevalue("es_server") if request.param != "sqlite" else None
    s = build(open_store(request.param, tmp_path_factory.mktemp("words"), server))
    try:
        yield s
    finally:
        close_store(s)


@pytest.fixture(params=BACKENDS)
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CatalogueStore]:
    """A catalogue of its own, for a test that writes."""
    server = request.getfixturevalue("es_server") if request.param != "sqlite" else None
    s = build(open_store(request.param, tmp_path, server))
    try:
        yield s
    finally:
        close_store(s)


def ids(store: CatalogueStore, text: str, level: str = "shot") -> list[str]:
    return sorted(h.id for h in run_search(store, text, level, 100).hits)


# --- the shared, backend-neutral parts ------------------------------------------------------
def test_folding_stems_and_highlights():
    assert fold("Núria PUIGCERCÓS") == "nuria puigcercos"
    assert stems("Obrim els pavellons", "ca") == stems("obrim els pavellons", "ca-ES")
    assert stems("running dogs", "en") == ["run", "dog"]
    assert stems("ciudades", "spa") == ["ciudad"]
    assert stems("Pavelló", None) == ["pavello"]  # no language: folded words
    assert highlight("Parlen les alcaldesses <b>", WordMatch.of("alcaldessa"), "ca") == (
        "Parlen les <mark>alcaldesses</mark> &lt;b&gt;")
    match = WordMatch.of("pavelló")
    assert highlight("a PAVELLO b", match, None) == "a <mark>PAVELLO</mark> b"
    long = "x " * 300 + "pavelló" + " y" * 300
    cut = highlight(long, match, "ca")
    assert "<mark>pavelló</mark>" in cut and cut.startswith("…") and cut.endswith("…")
    assert len(cut) < 300
    assert normalise_score(0) == 0 and normalise_score(BM25_K) == 0.5
    assert 0 < normalise_score(7.3) < 1 and normalise_score(-2) == 0


def test_word_fields_parse_and_cannot_be_mixed_with_labels(store: CatalogueStore):
    q = parse_query('said:"obrim el pavelló" subtitles:hola -screen:x text:y')
    assert [t.kind for g in q.groups for t in g] == ["words"] * 3
    assert parse_query(q.to_query()) == q
    resolved = resolve(store, 'said:"obrim el pavelló" subtitles:hola -screen:x text:y')
    assert [[(r.field, r.source) for r in g] for g in resolved.word_groups] == [
        [("said", "speech")], [("subtitle", "subtitles")], [("text", None)]]
    assert resolved.word_excluded[0].source == "screen"
    with pytest.raises(QueryError, match="cannot be OR-ed"):
        run_search(store, "said:dogs OR object:dog")
    with pytest.raises(QueryError, match="word terms cannot be used"):
        run_search(store, "object:dog ~said:dogs")


# --- searching --------------------------------------------------------------------------
def test_spoken_phrase_finds_the_overlapping_shot_episode_and_programme(store):
    assert ids(store, 'said:"obrim el pavelló"') == ["n1@1"]
    assert ids(store, 'said:"obrim el pavelló"', "episode") == ["n1"]
    assert ids(store, 'said:"obrim el pavelló"', "programme") == ["news"]
    assert ids(store, 'said:"we open the new sports hall"') == ["d1@1"]


def test_accents_and_case_are_folded(store):
    assert ids(store, "screen:puigcercos") == ["n1@0"]
    assert ids(store, "screen:NÚRIA") == ["n1@0"]
    assert ids(store, "screen:alcaldessa") == ["n1@0"]
    assert ids(store, "said:pavello") == ["n1@1"]


@pytest.mark.parametrize("text, expected", [
    ("said:run", ["d1@0"]),  # en: running
    ("said:dog", ["d1@0"]),  # en: dogs
    ("said:ciudad", ["d2@0"]),  # es: ciudades
    ("said:runner", []),  # a stem is not a prefix: runner is not run
    ("subtitle:alcaldessa", ["n1@2"]),  # ca: alcaldesses
    ('said:"pavelló municipals"', ["n1@1"]),  # ca: the phrase by its stems, in order
])
def test_stems_per_language(store, text: str, expected: list[str]):
    assert ids(store, text) == expected


def test_phrases_keep_their_order_and_sources_their_text(store):
    assert ids(store, 'said:"the open"') == []
    assert ids(store, 'said:"open the"') == ["d1@1"]
    assert ids(store, "said:alcaldessa") == []  # on screen, never said
    assert ids(store, "text:alcaldessa") == ["n1@0", "n1@2"]
    assert ids(store, "screen:alcaldessa") == ["n1@0"]
    assert ids(store, "subtitle:obrim") == []
    assert ids(store, "text:today", "episode") == ["d1"]


def test_word_and_object_terms_narrow_each_other(store):
    assert ids(store, "text:alcaldessa") == ["n1@0", "n1@2"]
    assert ids(store, "object:car") == ["n1@2"]
    assert ids(store, "text:alcaldessa object:car") == ["n1@2"]
    assert ids(store, "text:alcaldessa object:person") == ["n1@0"]
    assert ids(store, "said:obrim object:dog") == ["n1@1"]
    assert ids(store, "said:dogs object:dog") == ["d1@0"]
    assert ids(store, "said:dogs object:person") == []
    assert ids(store, "said:dogs object:person", "episode") == ["d1"]  # both in the episode
    assert ids(store, "said:obrim OR said:dogs") == ["d1@0", "n1@1"]
    assert ids(store, "said:obrim programme:docs") == []
    assert ids(store, "said:open after:2019-06-01", "episode") == ["d1"]
    assert ids(store, "said:open before:2019-06-01", "episode") == []


def test_excluded_word_terms_remove_what_they_match(store):
    assert ids(store, "object:person") == ["d1@1", "d2@0", "n1@0"]
    assert ids(store, "object:person -text:alcaldessa") == ["d1@1", "d2@0"]
    assert ids(store, "object:person -said:ciudades", "episode") == ["d1", "n1"]
    assert ids(store, "text:alcaldessa -subtitle:alcaldesses") == ["n1@0"]


def test_hits_carry_highlighted_snippets_and_times(store):
    page = run_search(store, 'said:"obrim el pavelló" object:dog', "shot")
    (hit,) = page.hits
    (word,) = hit.words
    assert word["snippet"] == "<mark>Obrim</mark> <mark>el</mark> <mark>pavelló</mark> municipal"
    assert (word["source"], word["field"], word["language"]) == ("speech", "said", "ca")
    assert (word["start_s"], word["end_s"]) == (6.0, 8.0)
    assert 0 < word["score"] < 1
    # The documented score: the geometric mean of the label's and the word term's.
    dog = next(e.score for e in hit.evidence if e.label == "dog")
    assert hit.score == pytest.approx((dog * word["score"]) ** 0.5, abs=2e-4)
    assert hit.to_dict()["words"][0]["snippet"].startswith("<mark>Obrim")
    (only,) = run_search(store, "screen:madrid", "episode").hits
    assert only.words[0]["snippet"] == "Alcaldesa de <mark>Madrid</mark> &lt;b&gt;&amp;&lt;/b&gt;"
    assert only.score == pytest.approx(only.words[0]["score"], abs=1e-4)
    assert "words" not in run_search(store, "object:dog").hits[0].to_dict()


# --- the API ----------------------------------------------------------------------------
@pytest.fixture()
def api(tmp_path: Path):
    from test_webui_catalogue import ApiSchemas, web_settings

    from webui import create_app

    s = build(SqliteStore(tmp_path / "cat.sqlite", top_k=0))
    s.write_words(EpisodeWords("d2", "subtitles", "srt/1", [], error="d2.srt: line 4: no "
                                                                     "timing"))
    client = create_app(web_settings(tmp_path), s).test_client()
    schemas = ApiSchemas(client.get("/api/v1/openapi.json").get_json())
    yield client, schemas
    s.close()


def test_api_transcript_route(api):
    client, schemas = api
    r = client.get("/api/v1/episodes/d1/transcript")
    assert r.status_code == 200
    body = r.get_json()
    schemas.validate(body, "Transcript")
    assert [(s["source"], s["start_s"], s["text"]) for s in body["segments"]] == [
        ("speech", 1.0, "The dogs were running along the beach"),
        ("speech", 6.0, "We open the new sports hall today"),
        ("subtitles", 6.0, "We open the new sports hall today")]
    assert body["source"] is None and body["links"]["page"] == "/episodes/d1"
    body = client.get("/api/v1/episodes/d1/transcript?source=subtitles").get_json()
    assert [s["source"] for s in body["segments"]] == ["subtitles"]
    body = client.get("/api/v1/episodes/d2/transcript").get_json()
    schemas.validate(body, "Transcript")
    assert {s["source"]: s["error"] for s in body["sources"]} == {
        "speech": None, "screen": None, "subtitles": "d2.srt: line 4: no timing"}
    r = client.get("/api/v1/episodes/d1/transcript?source=lyrics")
    assert r.status_code == 400 and "source must be one of" in r.get_json()["detail"]
    assert client.get("/api/v1/episodes/nope/transcript").status_code == 404
    r = client.get("/api/v1/episodes/d1/transcript?sauce=speech")
    assert r.status_code == 400  # unknown parameters are refused from the spec


def test_api_search_hits_carry_word_evidence(api):
    client, schemas = api
    r = client.get('/api/v1/search?q=said:"open the new" object:person&level=shot')
    assert r.status_code == 200
    body = r.get_json()
    schemas.validate(body, "SearchPage")
    (hit,) = body["hits"]
    assert hit["id"] == "d1@1"
    assert hit["words"][0]["snippet"] == (
        "We <mark>open</mark> <mark>the</mark> <mark>new</mark> sports hall today")
    assert body["query"]["word_groups"] == [[{"field": "said", "source": "speech",
                                              "value": "open the new"}]]
    body = client.get("/api/v1/search?q=object:person").get_json()
    schemas.validate(body, "SearchPage")
    assert all("words" not in h for h in body["hits"])


def test_word_terms_in_a_then_b(store):
    # d1: dogs are said over shot 0 (1-4 s), "open the new" over shot 1 (6-9 s).
    page = run_search(store, 'said:dogs then said:"open the new"', "shot")
    assert [(h.id, h.then["id"]) for h in page.hits] == [("d1@0", "d1@1")]
    assert page.hits[0].words[0]["snippet"].startswith("The <mark>dogs</mark>")
    assert ids(store, 'said:dogs then object:person') == ["d1@0"]
    assert ids(store, 'object:dog then said:open') == ["d1@0"]
    assert ids(store, 'said:"open the new" then said:dogs') == []  # the order counts
    assert ids(store, 'said:obrim then text:alcaldessa') == ["n1@1"]  # n1@1 -> n1@2
    assert ids(store, 'said:obrim then text:alcaldessa within 1s') == ["n1@1"]
    assert ids(store, 'text:alcaldessa then said:obrim') == ["n1@0"]
    with pytest.raises(QueryError, match="word terms cannot be used with ~"):
        run_search(store, "object:dog ~said:dogs")

PARITY = ['said:"obrim el pavelló"', "screen:puigcercos", "said:run", "said:ciudad",
          "subtitle:alcaldessa", 'said:"pavelló municipals"', "text:alcaldessa",
          "text:alcaldessa object:person", "said:obrim OR said:dogs",
          "object:person -text:alcaldessa", "said:open after:2019-06-01", "text:today",
          "said:runner", 'said:"the open"']


def test_sqlite_and_elasticsearch_give_the_same_hits(tmp_path: Path,
                                                       request: pytest.FixtureRequest):
    from search.backends.elasticsearch.store import EsStore

    stores = [build(SqliteStore(tmp_path / "parity.sqlite", top_k=0)),
              build(EsStore(request.getfixturevalue("es_config"), top_k=0))]
    try:
        for text in PARITY:
            for level in ("shot", "episode", "programme"):
                pages = [run_search(s, text, level, 100) for s in stores]
                got = [{h.id: sorted((w["source"], w["start_s"], w["end_s"], w["snippet"])
                                     for w in h.words) for h in p.hits} for p in pages]
                assert pages[0].total == pages[1].total, (text, level)
                assert got[0] == got[1], (text, level)
        assert stores[0].transcript("d1") == stores[1].transcript("d1")
    finally:
        for s in stores:
            s.close()


def test_a_word_matching_too_many_segments_is_refused(fresh_store, monkeypatch):
    store = fresh_store
    from search.backends.elasticsearch import words as es_words
    from search.backends.sqlite import word_search

    monkeypatch.setattr(word_search, "MAX_SEGMENT_HITS", 1)
    monkeypatch.setattr(es_words, "MAX_SEGMENT_HITS", 1)
    assert ids(store, "screen:alcaldessa") == ["n1@0"]
    with pytest.raises(StoreError, match="matches more than 1 text segments"):
        run_search(store, "text:alcaldessa")


def test_new_words_are_found_at_once(fresh_store):
    store = fresh_store
    assert ids(store, "said:bicicleta", "episode") == []
    assert ids(store, "said:pavelló", "episode") == ["n1"]
    store.write_words(EpisodeWords("n1", "speech", "v2", [
        seg("speech", 1.0, 2.0, "Una bicicleta vermella", "ca")]))
    assert ids(store, "said:bicicleta", "episode") == ["n1"]
    assert ids(store, "said:pavelló", "episode") == []  # the old speech is gone


def test_cli_prints_the_matching_words(tmp_path: Path):
    import json as _json
    import subprocess
    import sys

    build(SqliteStore(tmp_path / "catalogue.sqlite", top_k=0)).close()
    run = [sys.executable, "-m", "tvindex.cli", "search", 'said:"open the new" object:person',
           "--data-dir", str(tmp_path)]
    out = subprocess.run(run, check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "d1@1" in out.stdout
    assert "said:'open the new' [6.00-9.00 s]" in out.stdout
    assert "We «open» «the» «new» sports hall today" in out.stdout
    out = subprocess.run([*run, "--json"], check=True, capture_output=True, text=True,
                         timeout=120)
    (hit,) = _json.loads(out.stdout)["hits"]
    assert hit["words"][0]["snippet"].startswith("We <mark>open</mark>")
