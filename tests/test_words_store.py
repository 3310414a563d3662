"""Words in the store (issue 17): text segments per (episode, source) written, read back,
replaced atomically, dropped with their episode, on every backend.

The catalogue is built by writing ``EpisodeWords`` through the store (the extractors and the
end-to-end run from media are tested with the indexer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from search.backends.sqlite.store import SqliteStore
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.store import CatalogueStore, NotFound, StoreError
from tvindex.core.words import EpisodeWords, TextSegment, Word

BACKENDS = ("sqlite", "elasticsearch")
OBJ = LabelSet("coco80", "sigmoid", ("person", "dog", "car", "bicycle"))


def seg(index: int, obj: list[float], t0: float) -> SegmentTags:
    return SegmentTags(index, t0, t0 + 5, t0 + 2.5,
                       {"coco80": aggregate(np.array([obj], np.float32), 0.5)})


def episode_tags(eid: str, objs: list[list[float]]) -> EpisodeTags:
    segments = [seg(i, o, 5.0 * i) for i, o in enumerate(objs)]
    stats = {"coco80": aggregate(np.array(objs, np.float32), 0.5)}
    return EpisodeTags(eid, f"fp-{eid}", "v1", 5.0 * len(objs), segments, stats, "shots")


def speech(*lines: tuple[float, float, str], language: str = "ca") -> list[TextSegment]:
    return [TextSegment(a, b, "speech", text, language, 0.9,
                        tuple(Word(a + i * 0.3, a + i * 0.3 + 0.25, w, 0.8)
                              for i, w in enumerate(text.split())))
            for a, b, text in lines]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture()
def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest
               ) -> Iterator[Callable[[], CatalogueStore]]:
    opened: list[CatalogueStore] = []

    def make() -> CatalogueStore:
        if backend == "sqlite":
            s: CatalogueStore = SqliteStore(tmp_path / "cat.sqlite", top_k=0)
        else:
            from search.backends.elasticsearch.store import EsStore

            s = EsStore(request.getfixturevalue("es_config"), top_k=0)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture()
def store(make_store: Callable[[], CatalogueStore]) -> CatalogueStore:
    s = make_store()
    s.upsert_catalogue([ProgrammeRecord("news", "Notícies")],
                       [EpisodeRecord("n1", "news", "One", "/m/1.mp4"),
                        EpisodeRecord("n2", "news", "Two", "/m/2.mp4")])
    s.register_label_sets([OBJ])
    s.write_episode(episode_tags("n1", [[0.9, 0, 0, 0], [0, 0.9, 0, 0]]))
    s.write_episode(episode_tags("n2", [[0.9, 0, 0, 0]]))
    s.write_words(EpisodeWords("n1", "speech", "whisper-base/1", speech(
        (6.0, 8.0, "Obrim el pavelló"), (1.0, 3.5, "Bon dia a tothom"))))
    s.write_words(EpisodeWords("n1", "screen", "rapidocr/1", [
        TextSegment(0.0, 4.0, "screen", "Núria Puigcercós · alcaldessa de Girona", None, 0.97)]))
    return s


def texts(segments: list[TextSegment]) -> list[str]:
    return [s.text for s in segments]


def test_transcript_round_trip_in_time_order(store: CatalogueStore):
    got = store.transcript("n1")
    assert texts(got) == ["Núria Puigcercós · alcaldessa de Girona", "Bon dia a tothom",
                          "Obrim el pavelló"]
    first_speech = got[1]
    assert (first_speech.start_s, first_speech.end_s, first_speech.source,
            first_speech.language) == (1.0, 3.5, "speech", "ca")
    assert first_speech.confidence == pytest.approx(0.9)
    assert [w.text for w in first_speech.words] == ["Bon", "dia", "a", "tothom"]
    assert first_speech.words[1].start_s == pytest.approx(1.3)
    assert got[0].words == () and got[0].language is None
    assert texts(store.transcript("n1", "screen")) == [
        "Núria Puigcercós · alcaldessa de Girona"]
    assert store.transcript("n2") == [] and store.transcript("n1", "subtitles") == []
    with pytest.raises(NotFound):
        store.transcript("nope")
    assert store.word_versions() == {("n1", "speech"): "whisper-base/1",
                                     ("n1", "screen"): "rapidocr/1"}


def test_source_replaced_alone_and_errors_recorded(store: CatalogueStore):
    shots_before = [s.index for s in store.segments("n1")]
    store.write_words(EpisodeWords("n1", "speech", "whisper-small/1",
                                   speech((2.0, 3.0, "Hola"), language="es")))
    assert texts(store.transcript("n1", "speech")) == ["Hola"]
    assert texts(store.transcript("n1", "screen")) == ["Núria Puigcercós · alcaldessa de Girona"]
    assert [s.index for s in store.segments("n1")] == shots_before
    store.write_words(EpisodeWords("n1", "subtitles", "srt/1", [],
                                   error="n1.srt: line 3: bad timing '00:00:0x'"))
    versions = store.word_versions()
    assert versions[("n1", "speech")] == "whisper-small/1"
    assert versions[("n1", "subtitles")] == "srt/1"
    sources = {s["source"]: s for s in store.word_sources("n1")}
    assert sources["subtitles"]["error"] == "n1.srt: line 3: bad timing '00:00:0x'"
    assert sources["subtitles"]["segments"] == 0 and sources["speech"]["segments"] == 1
    assert sources["speech"]["error"] is None
    # An error with segments keeps none of them (the source failed for the episode).
    store.write_words(EpisodeWords("n1", "speech", "whisper-small/2",
                                   speech((2.0, 3.0, "Adéu")), error="audio undecodable"))
    assert store.transcript("n1", "speech") == []


def test_a_failing_write_leaves_the_previous_words(store: CatalogueStore):
    bad = [TextSegment(0.0, 1.0, "speech", "fine", "ca"),
           TextSegment(1.0, 2.0, "speech", None, "ca")]  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="segment 1: no text"):
        store.write_words(EpisodeWords("n1", "speech", "broken/1", bad))
    assert texts(store.transcript("n1", "speech")) == ["Bon dia a tothom", "Obrim el pavelló"]
    assert store.word_versions()[("n1", "speech")] == "whisper-base/1"


def test_unknown_source_and_episode_refused(store: CatalogueStore):
    with pytest.raises(StoreError, match="unknown word source"):
        store.write_words(EpisodeWords("n1", "lyrics", "v", []))
    with pytest.raises(NotFound):
        store.write_words(EpisodeWords("nope", "speech", "v", []))


def test_words_survive_reindexing_pictures_and_go_with_the_episode(store: CatalogueStore):
    store.write_episode(episode_tags("n1", [[0.1, 0.9, 0, 0]]))  # a new tagger: pictures only
    assert len(store.transcript("n1")) == 3
    store.mark_failed("n1", "decoding failed")
    assert store.transcript("n1") == []
    assert ("n1", "speech") not in store.word_versions()
    store.write_words(EpisodeWords("n2", "speech", "v", speech((0.0, 1.0, "hola"))))
    store.remove_episode("n2")
    assert store.word_versions() == {}


def test_sqlite_full_text_index_follows_the_segments(store: CatalogueStore, backend: str):
    if backend != "sqlite":
        pytest.skip("SQLite's FTS5 table")
    db = sqlite3.connect(store.path)  # type: ignore[attr-defined]
    n_fts = db.execute("SELECT count(*) FROM text_fts").fetchone()[0]
    n_seg = db.execute("SELECT count(*) FROM text_segments").fetchone()[0]
    assert n_fts == n_seg == 3
    surface, stems = db.execute(
        "SELECT surface, stems FROM text_fts f JOIN text_segments s ON s.id = f.rowid "
        "WHERE s.text LIKE 'Obrim%'").fetchone()
    assert surface == "obrim el pavello" and stems == "obrim el pavell"
    store.remove_episode("n1")
    assert db.execute("SELECT count(*) FROM text_fts").fetchone()[0] == 0
    db.close()


def test_sqlite_missing_full_text_table_is_damage(tmp_path: Path):
    path = tmp_path / "cat.sqlite"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE text_fts")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="text_fts"):
        SqliteStore(path)


def test_elasticsearch_readers_never_see_a_half_written_source(store: CatalogueStore,
                                                                backend: str):
    if backend != "elasticsearch":
        pytest.skip("Elasticsearch's generations (SQLite writes in one transaction)")
    es, index = store.es, store._words_index()  # type: ignore[attr-defined]
    # A write that stopped after adding its segments, before committing them:
    record = es.get(index=index, id="src:speech:n1")["_source"]
    es.index(index=index, id="src:speech:n1", refresh=True,
             document={**record, "pending_gen": "g2", "dirty": True})
    es.index(index=index, id="seg:speech:n1:g2:0", refresh=True, document={
        "kind": "segment", "episode_id": "n1", "programme_id": "news", "source": "speech",
        "gen": "g2", "key": "000000000", "start_s": 0.0, "end_s": 1.0, "language": "ca",
        "text": "Mig escrit", "surface": "mig escrit", "stems": "mig escrit", "words": []})
    assert texts(store.transcript("n1", "speech")) == ["Bon dia a tothom", "Obrim el pavelló"]
    from search.engine import run_search

    assert run_search(store, "said:escrit", "episode").total == 0
    assert run_search(store, "said:pavelló", "episode").total == 1
    # The next write of the source replaces both generations.
    store.write_words(EpisodeWords("n1", "speech", "v2", speech((3.0, 4.0, "Adéu"))))
    assert texts(store.transcript("n1", "speech")) == ["Adéu"]
    assert run_search(store, "said:escrit OR said:pavelló", "episode").total == 0
