"""The catalogue store on a hand-built catalogue: round trip, ranking, filters, hostile input.

Every test runs against every backend (``backend`` fixture: sqlite, elasticsearch); only the
fixtures below know which one it is.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.aggregate import aggregate
from indexer.taggers.base import LabelSet
from search.engine import run_search
from search.query import QueryError
from search.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from search.sqlite_store import SCHEMA_VERSION, SqliteStore
from search.store import CatalogueStore, NotFound, StoreError

BACKENDS = ("sqlite", "elasticsearch")

OBJ = LabelSet("coco80", "sigmoid", ("person", "dog", "car", "bicycle"))
SCN = LabelSet("places365", "softmax", ("beach", "street", "kitchen"))


def seg(index: int, obj: list[list[float]], scn: list[list[float]], t0: float) -> SegmentTags:
    """A segment from per-frame probabilities (rows = frames)."""
    return SegmentTags(index, t0, t0 + 5, t0 + 2.5,
                       {"coco80": aggregate(np.array(obj, np.float32), 0.5),
                        "places365": aggregate(np.array(scn, np.float32), 0.2)},
                       thumbnail=b"\xff\xd8jpeg" + bytes([index]))


def episode_tags(eid: str, segments: list[SegmentTags]) -> EpisodeTags:
    n = {"coco80": [], "places365": []}
    for s in segments:
        for k, rows in n.items():
            rows.append((s.stats[k].score, s.stats[k].n_frames))
    stats = {k: aggregate(np.repeat(np.stack([v for v, _ in rows]),
                                    [c for _, c in rows], axis=0), 0.5 if k == "coco80" else 0.2)
             for k, rows in n.items()}
    return EpisodeTags(eid, f"fp-{eid}", "v1", 10.0, segments, stats, "shots")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture()
def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest
               ) -> Iterator[Callable[..., CatalogueStore]]:
    """Opens a store of the backend under test (the same one on every call)."""
    opened: list[CatalogueStore] = []

    def make(min_score: float = 0.05, top_k: int = 0) -> CatalogueStore:
        if backend == "sqlite":
            s: CatalogueStore = SqliteStore(tmp_path / "cat.sqlite", min_score=min_score,
                                            top_k=top_k)
        else:
            from search.es_store import EsStore

            s = EsStore(request.getfixturevalue("es_config"), min_score=min_score, top_k=top_k)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture()
def empty_store(make_store: Callable[..., CatalogueStore]) -> CatalogueStore:
    return make_store()


@pytest.fixture()
def raw_dump(backend: str) -> Callable[[CatalogueStore], Any]:
    """Everything a backend stored, minus wall-clock timestamps, to compare two states."""
    def sqlite_dump(store: CatalogueStore) -> dict[str, list]:
        db = sqlite3.connect(store.path)
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
                for t in ("segments", "segment_postings", "episode_labels", "programme_labels",
                          "episode_vectors", "programme_vectors")}

    def es_dump(store: Any) -> dict[str, list]:
        out = {}
        for kind, index in store._idx.items():
            hits = store.es.search(index=index, size=10_000, query={"match_all": {}})
            docs = sorted((h["_id"], h["_source"]) for h in hits["hits"]["hits"])
            for _, src in docs:
                src.pop("indexed_at", None)
            out[kind] = docs
        return out

    return sqlite_dump if backend == "sqlite" else es_dump


@pytest.fixture()
def store(empty_store: CatalogueStore) -> CatalogueStore:
    s = empty_store
    s.upsert_catalogue(
        [ProgrammeRecord("beach-dogs", "Beach Dogs", genre="nature"),
         ProgrammeRecord("city", "<script>alert(1)</script> City", genre="news")],
        [EpisodeRecord("bd1", "beach-dogs", "One", "/m/a.mp4", dt.date(2021, 5, 1)),
         EpisodeRecord("bd2", "beach-dogs", "Two", "/m/b.mp4", dt.date(2019, 5, 1)),
         EpisodeRecord("c1", "city", "Rush hour", "/m/c.mp4", dt.date(2022, 1, 1))])
    s.register_label_sets([OBJ, SCN])
    s.write_episode(episode_tags("bd1", [
        seg(0, [[0.9, 0.9, 0.0, 0.0], [0.7, 0.7, 0.0, 0.0]], [[0.8, 0.1, 0.1]] * 2, 0.0),
        seg(1, [[0.9, 0.3, 0.6, 0.0]], [[0.6, 0.3, 0.1]], 5.0)]))
    s.write_episode(episode_tags("bd2", [
        seg(0, [[0.2, 0.95, 0.0, 0.0]], [[0.9, 0.05, 0.05]], 0.0)]))
    s.write_episode(episode_tags("c1", [
        seg(0, [[0.99, 0.0, 0.9, 0.8]], [[0.0, 0.9, 0.1]], 0.0),
        seg(1, [[0.95, 0.6, 0.9, 0.0]], [[0.1, 0.8, 0.1]], 5.0)]))
    return s


def ids(page) -> list[str]:
    return [h.id for h in page.hits]


def test_round_trip(store: CatalogueStore):
    from search.es_mappings import MAPPING_VERSION

    expected = {"sqlite": SCHEMA_VERSION, "elasticsearch": MAPPING_VERSION}[store.backend]
    assert store.schema_version() == expected
    assert [ls.name for ls in store.label_sets()] == ["coco80", "places365"]
    assert store.label_sets()[0] == OBJ
    ep = store.episode("bd1")
    assert ep["programme_id"] == "beach-dogs" and ep["n_segments"] == 2 and ep["n_frames"] == 3
    # episode score = mean over its 3 frames: dog (0.9 + 0.7 + 0.3) / 3
    dog = next(x for x in ep["top_labels"]["coco80"] if x["label"] == "dog")
    assert dog["score"] == pytest.approx(1.9 / 3, abs=1e-4)
    assert dog["coverage"] == pytest.approx(2 / 3, abs=1e-4)
    segs = store.segments("bd1")
    assert [s["id"] for s in segs] == ["bd1@0", "bd1@1"]
    assert segs[0]["top_labels"]["coco80"][0]["label"] in ("person", "dog")
    assert store.thumbnail("bd1", 1) == b"\xff\xd8jpeg\x01"
    # programme = frame-weighted mean over its episodes (3 + 1 frames)
    prog = store.programme("beach-dogs")
    dog = next(x for x in prog["top_labels"]["coco80"] if x["label"] == "dog")
    assert dog["score"] == pytest.approx((1.9 + 0.95) / 4, abs=1e-4)
    names, vecs = store.vectors("programme", "coco80")
    assert names == ["beach-dogs", "city"] and vecs.shape == (2, 4)
    with pytest.raises(NotFound):
        store.episode("nope")


def test_ranking_order_and_evidence(store: CatalogueStore):
    page = run_search(store, "object:dog", "shot")
    # dog per shot: bd2@0 0.95, bd1@0 0.8, c1@1 0.6, bd1@1 0.3 (c1@0 has none)
    assert ids(page) == ["bd2@0", "bd1@0", "c1@1", "bd1@1"]
    assert page.hits[0].evidence[0].label == "dog"
    assert page.hits[0].evidence[0].score == pytest.approx(0.95)
    assert page.hits[1].start_s == 0.0 and page.hits[1].time_s == 2.5
    # two labels: geometric mean of dog and beach
    page = run_search(store, "object:dog scene:beach", "shot")
    assert ids(page)[:2] == ["bd2@0", "bd1@0"]
    assert page.hits[0].score == pytest.approx(np.sqrt(0.95 * 0.9), rel=1e-4)
    # exclusion: car present lowers c1@1 below bd1@1? score = sqrt(p_dog * (1 - p_car))
    page = run_search(store, "object:dog -object:car", "shot")
    assert ids(page)[0] == "bd2@0"
    scores = {h.id: h.score for h in page.hits}
    assert scores["c1@1"] == pytest.approx(np.sqrt(0.6 * 0.1), rel=1e-3)
    assert scores["bd1@1"] == pytest.approx(np.sqrt(0.3 * 0.4), rel=1e-3)


def test_levels_or_filters_and_pagination(store: CatalogueStore):
    assert ids(run_search(store, "object:person", "programme")) == ["city", "beach-dogs"]
    assert ids(run_search(store, "object:person", "episode"))[0] == "c1"
    assert set(ids(run_search(store, "object:bicycle OR scene:beach", "episode"))) == {
        "bd1", "bd2", "c1"}
    assert ids(run_search(store, 'object:dog programme:"Beach Dogs"', "shot")) == [
        "bd2@0", "bd1@0", "bd1@1"]
    assert ids(run_search(store, "object:dog after:2020-01-01", "episode")) == ["bd1", "c1"]
    assert ids(run_search(store, "object:dog genre:news", "shot")) == ["c1@1"]
    page = run_search(store, "object:dog", "shot", limit=2, offset=1)
    assert ids(page) == ["bd1@0", "c1@1"] and page.total == 4
    assert ids(run_search(store, "programme:city", "shot")) == ["c1@0", "c1@1"]


@pytest.mark.parametrize("text", [
    "'; DROP TABLE segments; --", 'object:"dog', "x" * 10_000, "object:dog OR", "\x00",
    "programme:\"'; DELETE FROM episodes; --\"", "-", "::::", "object:%", "object:dog_"])
def test_hostile_queries_error_cleanly_and_leave_data_intact(store: CatalogueStore, text: str):
    try:
        page = run_search(store, text, "shot")
        assert page.hits == [] or all(h.score >= 0 for h in page.hits)
    except QueryError as err:
        assert str(err)
    assert len(run_search(store, "object:dog", "shot").hits) == 4
    assert sum(len(store.segments(e)) for e in ("bd1", "bd2", "c1")) == 5


def test_unknown_label_suggests(store: CatalogueStore):
    with pytest.raises(QueryError, match="did you mean: dog"):
        run_search(store, "object:dgo")


def test_bad_paging_and_level(store: CatalogueStore):
    for kwargs in ({"level": "scene"}, {"limit": 0}, {"limit": -1}, {"offset": -5}):
        with pytest.raises(StoreError):
            run_search(store, "object:dog", **kwargs)


def test_rewrite_is_idempotent_and_failure_drops_tags(store: CatalogueStore, raw_dump):
    before = raw_dump(store)
    segs = [seg(0, [[0.2, 0.95, 0.0, 0.0]], [[0.9, 0.05, 0.05]], 0.0)]
    store.write_episode(episode_tags("bd2", segs))
    assert raw_dump(store) == before
    store.mark_failed("bd2", "corrupt file")
    state = {s.id: s for s in store.episode_states()}["bd2"]
    assert state.status == "failed" and state.error == "corrupt file"
    assert "bd2@0" not in ids(run_search(store, "object:dog", "shot"))
    # the programme's aggregate now comes from bd1 alone
    prog_dog = next(x for x in store.programme("beach-dogs")["top_labels"]["coco80"]
                if x["label"] == "dog")
    assert prog_dog["score"] == pytest.approx(1.9 / 3, abs=1e-4)


def test_label_set_change_is_refused(store: CatalogueStore):
    with pytest.raises(StoreError, match="different labels"):
        store.register_label_sets([LabelSet("coco80", "sigmoid", ("person", "dog"))])


def test_title_is_data_not_markup(store: CatalogueStore):
    titles = dict(store.programme_titles())
    assert titles["city"] == "<script>alert(1)</script> City"


def test_tiny_probabilities_kept_by_top_k_rank_like_the_documented_score(make_store):
    """Labels kept only for being in the top k can have p ~ 0 (even exactly 0): the score
    clamps them (log of max(p, 1e-6)) and every backend must agree."""
    store = make_store(min_score=0.5, top_k=4)
    store.upsert_catalogue([ProgrammeRecord("p", "P")],
                           [EpisodeRecord("e", "p", "E", "/m/e.mp4", dt.date(2020, 1, 1))])
    store.register_label_sets([OBJ, SCN])
    store.write_episode(episode_tags("e", [
        seg(0, [[1e-9, 0.0, 0.9, 0.999_999_9]], [[1.0, 0.0, 0.0]], 0.0),
        seg(1, [[2e-7, 3e-6, 0.8, 0.0]], [[0.0, 1.0, 0.0]], 5.0),
        seg(2, [[0.6, 1e-12, 0.9, 0.5]], [[0.5, 0.5, 0.0]], 10.0)]))
    page = run_search(store, "object:person object:car", "shot")
    assert ids(page) == ["e@2", "e@0", "e@1"]  # person 1e-9 and 2e-7 both count as 1e-6
    assert page.hits[1].score == pytest.approx(np.sqrt(1e-6 * 0.9), rel=1e-3)
    page = run_search(store, "object:car -object:bicycle -object:dog", "shot")
    assert ids(page) == ["e@1", "e@2", "e@0"]
    assert page.hits[2].score == pytest.approx((0.9 * 1e-6 * 1.0) ** (1 / 3), rel=1e-2)
    assert ids(run_search(store, "scene:beach OR scene:kitchen", "shot")) == ["e@0", "e@2",
                                                                               "e@1"]
