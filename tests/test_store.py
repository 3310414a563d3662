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

from search.backends.sqlite.store import SCHEMA_VERSION, SqliteStore
from search.engine import run_search
from search.query import QueryError
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.store import CatalogueStore, NotFound, StoreError

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
            from search.backends.elasticsearch.store import EsStore

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
                src.pop("embedding_at", None)
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
    from search.backends.elasticsearch.mappings import MAPPING_VERSION

    expected = {"sqlite": SCHEMA_VERSION, "elasticsearch": MAPPING_VERSION}[store.backend]
    assert store.schema_version() == expected
    assert [ls.name for ls in store.label_sets()] == ["coco80", "places365"]
    assert store.label_sets()[0] == OBJ
    ep = store.episode("bd1")
    assert ep.programme_id == "beach-dogs" and ep.n_segments == 2 and ep.n_frames == 3
    # episode score = mean over its 3 frames: dog (0.9 + 0.7 + 0.3) / 3
    dog = next(x for x in ep.top_labels["coco80"] if x.label == "dog")
    assert dog.score == pytest.approx(1.9 / 3, abs=1e-4)
    assert dog.coverage == pytest.approx(2 / 3, abs=1e-4)
    segs = store.segments("bd1")
    assert [s.id for s in segs] == ["bd1@0", "bd1@1"]
    assert segs[0].top_labels["coco80"][0].label in ("person", "dog")
    assert store.thumbnail("bd1", 1) == b"\xff\xd8jpeg\x01"
    # programme = frame-weighted mean over its episodes (3 + 1 frames)
    prog = store.programme("beach-dogs")
    dog = next(x for x in prog.top_labels["coco80"] if x.label == "dog")
    assert dog.score == pytest.approx((1.9 + 0.95) / 4, abs=1e-4)
    names, vecs = store.vectors("programme", "coco80")
    assert names == ["beach-dogs", "city"] and vecs.shape == (2, 4)
    with pytest.raises(NotFound):
        store.episode("nope")


def test_ranking_order_and_evidence(store: CatalogueStore):
    page = run_search(store, "object:dog", "shot")
    # dog per shot: bd2@0 0.95, bd1@0 0.8, c1@1 0.6, bd1@1 0.3 (c1@0 has none); present
    # (some frame reached coco80's threshold 0.5) in the first three only
    assert ids(page) == ["bd2@0", "bd1@0", "c1@1"]
    assert page.hits[0].evidence[0].label == "dog"
    assert page.hits[0].evidence[0].score == pytest.approx(0.95)
    assert page.hits[1].start_s == 0.0 and page.hits[1].time_s == 2.5
    # two labels: geometric mean of dog and beach
    page = run_search(store, "object:dog scene:beach", "shot")
    assert ids(page)[:2] == ["bd2@0", "bd1@0"]
    assert page.hits[0].score == pytest.approx(np.sqrt(0.95 * 0.9), rel=1e-4)
    # hard exclusion: car is present in c1@1, so it goes
    assert "c1@1" not in ids(run_search(store, "object:dog -object:car", "shot"))
    # soft (~): car lowers c1@1, score = sqrt(p_dog * (1 - p_car))
    page = run_search(store, "object:dog ~object:car", "shot")
    assert ids(page)[0] == "bd2@0"
    scores = {h.id: h.score for h in page.hits}
    assert scores["c1@1"] == pytest.approx(np.sqrt(0.6 * 0.1), rel=1e-3)


def test_levels_or_filters_and_pagination(store: CatalogueStore):
    assert ids(run_search(store, "object:person", "programme")) == ["city", "beach-dogs"]
    assert ids(run_search(store, "object:person", "episode"))[0] == "c1"
    assert set(ids(run_search(store, "object:bicycle OR scene:beach", "episode"))) == {
        "bd1", "bd2", "c1"}
    assert ids(run_search(store, 'object:dog programme:"Beach Dogs"', "shot")) == [
        "bd2@0", "bd1@0"]
    assert ids(run_search(store, "object:dog after:2020-01-01", "episode")) == ["bd1", "c1"]
    assert ids(run_search(store, "object:dog genre:news", "shot")) == ["c1@1"]
    page = run_search(store, "object:dog", "shot", limit=2, offset=1)
    assert ids(page) == ["bd1@0", "c1@1"] and page.total == 3
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
    assert len(run_search(store, "object:dog", "shot").hits) == 3
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
    prog_dog = next(x for x in store.programme("beach-dogs").top_labels["coco80"]
                    if x.label == "dog")
    assert prog_dog.score == pytest.approx(1.9 / 3, abs=1e-4)


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
    assert ids(page) == ["e@2"]  # person is present (>= 0.5) in e@2 only
    page = run_search(store, "object:car ~object:person", "shot")
    assert ids(page) == ["e@0", "e@1", "e@2"]  # 1 - 1e-9, 1 - 2e-7 and 1 - 0.6
    page = run_search(store, "object:car ~object:bicycle ~object:dog", "shot")
    assert ids(page) == ["e@1", "e@2", "e@0"]
    assert page.hits[2].score == pytest.approx((0.9 * 1e-6 * 1.0) ** (1 / 3), rel=1e-2)
    # e@1 carries beach and kitchen (top k) but neither is present there
    assert ids(run_search(store, "scene:beach OR scene:kitchen", "shot")) == ["e@0", "e@2"]


# --- embeddings ------------------------------------------------------------------------------
def unit_rows(frames: list[list[float]]) -> np.ndarray:
    f = np.asarray(frames, np.float64)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)


def embedded(tags: EpisodeTags, frames: list[list[list[float]]], model: str = "m1"
             ) -> EpisodeTags:
    """Attach embeddings as the indexer makes them: per segment, the mean of its frames' unit
    embeddings (``frames[i]``: segment i's raw frame vectors); the episode's over all frames."""
    for s, f in zip(tags.segments, frames, strict=True):
        s.embedding = unit_rows(f).mean(axis=0).astype(np.float32)
    tags.embedding = unit_rows([r for f in frames for r in f]).mean(axis=0).astype(np.float32)
    tags.embedding_model = model
    return tags


def normalised(*vectors) -> np.ndarray:
    m = np.asarray(vectors, np.float64)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


# Raw frame embeddings (D = 4), as many frames per segment as the store fixture's segments.
BD1 = [[[1, 0, 0, 0], [0, 2, 0, 0]], [[1, 1, 0, 0]]]
BD2 = [[[0, 0, 3, 0]]]
C1 = [[[0, 0, 0, 1]], [[1, 0, 0, 1]]]


def tags_bd1() -> EpisodeTags:
    return episode_tags("bd1", [
        seg(0, [[0.9, 0.9, 0.0, 0.0], [0.7, 0.7, 0.0, 0.0]], [[0.8, 0.1, 0.1]] * 2, 0.0),
        seg(1, [[0.9, 0.3, 0.6, 0.0]], [[0.6, 0.3, 0.1]], 5.0)])


def tags_bd2() -> EpisodeTags:
    return episode_tags("bd2", [seg(0, [[0.2, 0.95, 0.0, 0.0]], [[0.9, 0.05, 0.05]], 0.0)])


def tags_c1() -> EpisodeTags:
    return episode_tags("c1", [
        seg(0, [[0.99, 0.0, 0.9, 0.8]], [[0.0, 0.9, 0.1]], 0.0),
        seg(1, [[0.95, 0.6, 0.9, 0.0]], [[0.1, 0.8, 0.1]], 5.0)])


@pytest.fixture()
def emb_store(store: CatalogueStore) -> CatalogueStore:
    """The store fixture's catalogue, written again with embeddings of model m1."""
    store.write_episode(embedded(tags_bd1(), BD1))
    store.write_episode(embedded(tags_bd2(), BD2))
    store.write_episode(embedded(tags_c1(), C1))
    return store


def frames_mean(frames: list[list[list[float]]]) -> np.ndarray:
    return unit_rows([r for f in frames for r in f]).mean(axis=0)


def check(got: tuple[list[str], np.ndarray], ids_: list[str], rows) -> None:
    names, m = got
    assert names == ids_
    assert m.dtype == np.float32 and m.shape == (len(ids_), 4)
    np.testing.assert_allclose(m, np.asarray(rows), atol=1e-6)


def test_embeddings_round_trip(emb_store: CatalogueStore):
    s = emb_store
    assert s.embedding_model() == "m1"
    seg_means = [unit_rows(f).mean(axis=0) for f in BD1 + BD2 + C1]
    check(s.embeddings("shot"), ["bd1@0", "bd1@1", "bd2@0", "c1@0", "c1@1"],
          normalised(*seg_means))
    e_bd1, e_bd2, e_c1 = frames_mean(BD1), frames_mean(BD2), frames_mean(C1)
    check(s.embeddings("episode"), ["bd1", "bd2", "c1"], normalised(e_bd1, e_bd2, e_c1))
    # programme: frame-weighted mean of the episodes' (unnormalised) means: 3 + 1 frames
    check(s.embeddings("programme"), ["beach-dogs", "city"],
          normalised(3 * e_bd1 + 1 * e_bd2, e_c1))
    # the label data is untouched by the embeddings
    assert [h.id for h in run_search(s, "object:dog", "shot").hits] == [
        "bd2@0", "bd1@0", "c1@1"]


def test_embeddings_replaced_on_rewrite(emb_store: CatalogueStore):
    s = emb_store
    new = [[[0, 1, 0, 0]]]
    s.write_episode(embedded(episode_tags("bd1", [
        seg(0, [[0.5, 0.5, 0.0, 0.0]], [[0.8, 0.1, 0.1]], 0.0)]), new))
    names, m = s.embeddings("shot")
    assert names == ["bd1@0", "bd2@0", "c1@0", "c1@1"]
    np.testing.assert_allclose(m[0], [0, 1, 0, 0], atol=1e-6)
    e_bd2 = frames_mean(BD2)
    check(s.embeddings("programme", ["bd1"]), ["beach-dogs"],
          normalised(1 * frames_mean(new) + 1 * e_bd2))
    # written again without embeddings: the episode has none any more
    s.write_episode(tags_bd1())
    assert s.embeddings("shot")[0] == ["bd2@0", "c1@0", "c1@1"]
    assert s.embeddings("episode")[0] == ["bd2", "c1"]
    check(s.embeddings("programme"), ["beach-dogs", "city"],
          normalised(e_bd2, frames_mean(C1)))
    assert s.embedding_model() == "m1"


def test_embeddings_dropped_by_failure_and_removal(emb_store: CatalogueStore):
    s = emb_store
    s.mark_failed("bd2", "corrupt file")
    assert s.embeddings("shot")[0] == ["bd1@0", "bd1@1", "c1@0", "c1@1"]
    check(s.embeddings("programme"), ["beach-dogs", "city"],
          normalised(frames_mean(BD1), frames_mean(C1)))
    s.remove_episode("c1")
    assert s.embeddings("shot")[0] == ["bd1@0", "bd1@1"]
    assert s.embeddings("episode")[0] == ["bd1"]
    assert s.embeddings("programme")[0] == ["beach-dogs"]
    s.mark_failed("bd1", "gone")
    assert s.embedding_model() is None
    for level in ("shot", "episode", "programme"):
        names, m = s.embeddings(level)
        assert names == [] and m.shape == (0, 0) and m.dtype == np.float32


def test_embeddings_filtered_by_episode(emb_store: CatalogueStore):
    s = emb_store
    assert s.embeddings("shot", ["c1"])[0] == ["c1@0", "c1@1"]
    assert s.embeddings("shot", ["c1", "bd2", "nope"])[0] == ["bd2@0", "c1@0", "c1@1"]
    assert s.embeddings("episode", ["bd2", "nope"])[0] == ["bd2"]
    # programmes of the episodes, with all their episodes
    check(s.embeddings("programme", ["bd2"]), ["beach-dogs"],
          normalised(3 * frames_mean(BD1) + frames_mean(BD2)))
    for level in ("shot", "episode", "programme"):
        names, m = s.embeddings(level, [])
        assert names == [] and m.shape == (0, 0)
        assert s.embeddings(level, ["nope"])[0] == []


def test_embeddings_of_another_model_are_left_out(emb_store: CatalogueStore):
    """Mid-way through a re-index after a model change (of another dimension, too), only the
    episodes of the newest model are served."""
    s = emb_store
    s.write_episode(embedded(tags_c1(), [[[0, 0, 1]], [[0, 1, 0]]], model="m2"))
    assert s.embedding_model() == "m2"
    names, m = s.embeddings("shot")
    assert names == ["c1@0", "c1@1"] and m.shape == (2, 3)
    np.testing.assert_allclose(m, [[0, 0, 1], [0, 1, 0]], atol=1e-6)
    assert s.embeddings("episode")[0] == ["c1"]
    assert s.embeddings("programme")[0] == ["city"]
    s.write_episode(embedded(tags_bd1(), [[[1, 0, 0], [1, 0, 0]], [[0, 1, 0]]], model="m2"))
    assert s.embeddings("episode")[0] == ["bd1", "c1"]
    # beach-dogs from bd1 alone: bd2 is still m1
    names, m = s.embeddings("programme")
    assert names == ["beach-dogs", "city"]
    np.testing.assert_allclose(m[0], normalised([2 / 3, 1 / 3, 0])[0], atol=1e-6)
    assert s.embeddings("shot", ["bd2"])[0] == []
    # the m2 episodes fail: the newest written episode with embeddings is m1 again
    s.mark_failed("bd1", "x")
    s.mark_failed("c1", "x")
    assert s.embedding_model() == "m1"
    assert s.embeddings("shot")[0] == ["bd2@0"]


def test_embedding_order_and_zero_vectors(make_store):
    """Ids sorted by episode id, then by the integer segment index (10 after 9), whatever
    order they were written in; a mean of zero stays zero (never NaN)."""
    s = make_store()
    s.upsert_catalogue([ProgrammeRecord("z", "Z"), ProgrammeRecord("a", "A")],
                       [EpisodeRecord("z9", "a", "Z9", "/m/z.mp4"),
                        EpisodeRecord("a10", "z", "A10", "/m/a.mp4")])
    s.register_label_sets([OBJ, SCN])
    order = [3, 11, 0, 10, 2, 1, 9]
    segments = [seg(i, [[0.5, 0.1, 0.1, 0.1]], [[0.3, 0.3, 0.4]], 5.0 * i) for i in order]
    s.write_episode(embedded(episode_tags("z9", segments),
                             [[[i + 1, 1, 0, 0]] for i in order]))
    zero = [seg(0, [[0.5, 0.1, 0.1, 0.1]] * 2, [[0.3, 0.3, 0.4]] * 2, 0.0)]
    s.write_episode(embedded(episode_tags("a10", zero), [[[1, 0, 0, 0], [-1, 0, 0, 0]]]))
    names, m = s.embeddings("shot")
    assert names == ["a10@0"] + [f"z9@{i}" for i in sorted(order)]
    assert not np.isnan(m).any()
    np.testing.assert_array_equal(m[0], 0)
    np.testing.assert_allclose(m[-1], normalised([12, 1, 0, 0])[0], atol=1e-6)
    names, m = s.embeddings("episode")
    assert names == ["a10", "z9"] and not np.isnan(m).any()
    np.testing.assert_array_equal(m[0], 0)
    names, m = s.embeddings("programme")
    assert names == ["a", "z"] and not np.isnan(m).any()
    np.testing.assert_array_equal(m[1], 0)


def test_empty_store_has_no_embeddings(empty_store: CatalogueStore):
    assert empty_store.embedding_model() is None
    for level in ("shot", "episode", "programme"):
        names, m = empty_store.embeddings(level)
        assert names == [] and m.shape == (0, 0) and m.dtype == np.float32


def test_episodes_without_embeddings(store: CatalogueStore):
    assert store.embedding_model() is None
    for level in ("shot", "episode", "programme"):
        names, m = store.embeddings(level)
        assert names == [] and m.shape == (0, 0) and m.dtype == np.float32
    # one episode with embeddings among others without
    store.write_episode(embedded(tags_bd2(), BD2))
    assert store.embeddings("shot")[0] == ["bd2@0"]
    assert store.embeddings("episode")[0] == ["bd2"]
    check(store.embeddings("programme"), ["beach-dogs"], normalised(frames_mean(BD2)))
    with pytest.raises(StoreError, match="unknown level"):
        store.embeddings("scene")


def test_bad_embeddings_are_refused(store: CatalogueStore):
    tags = embedded(tags_bd2(), BD2)
    tags.embedding_model = ""
    with pytest.raises(StoreError, match="without an embedding_model"):
        store.write_episode(tags)
    tags = embedded(tags_bd2(), BD2)
    tags.segments[0].embedding = np.ones(3, np.float32)
    with pytest.raises(StoreError, match="shape"):
        store.write_episode(tags)
    assert store.embedding_model() is None and store.episode("bd2").status == "indexed"


def test_sqlite_v1_file_is_migrated(tmp_path: Path):
    """A catalogue written by schema 1 (before embeddings) opens, migrates to 2 in place and
    keeps its data; it then stores embeddings."""
    from search.backends.sqlite.schema import MIGRATIONS

    # The v1 file, made as SqliteStore._migrate made it ...
    old = tmp_path / "v1.sqlite"
    db = sqlite3.connect(old, isolation_level=None)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    for statement in MIGRATIONS[1].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO meta VALUES ('generation', '0')")
    # ... holding an indexed catalogue: the rows of schema 1's tables as the writer makes them.
    with SqliteStore(tmp_path / "src.sqlite", top_k=0) as src:
        src.upsert_catalogue(
            [ProgrammeRecord("beach-dogs", "Beach Dogs")],
            [EpisodeRecord("bd1", "beach-dogs", "One", "/m/a.mp4", dt.date(2021, 5, 1)),
             EpisodeRecord("bd2", "beach-dogs", "Two", "/m/b.mp4", dt.date(2019, 5, 1))])
        src.register_label_sets([OBJ, SCN])
        src.write_episode(tags_bd1())
    tables = [t.split("(")[0].split()[-1] for t in MIGRATIONS[1].split(";")
              if "CREATE TABLE" in t]
    db.execute("ATTACH DATABASE ? AS src", (str(tmp_path / "src.sqlite"),))
    # schema 1's columns (later migrations add columns, e.g. 3: the episodes' timecodes)
    cols = {t: ", ".join(r[1] for r in db.execute(f"PRAGMA main.table_info({t})"))
            for t in tables}
    for t in tables:
        db.execute(f"INSERT INTO main.{t} SELECT {cols[t]} FROM src.{t}")
    db.execute("UPDATE meta SET value='7' WHERE key='generation'")
    db.execute("DETACH DATABASE src")
    before = {t: db.execute(f"SELECT {cols[t]} FROM {t} ORDER BY 1, 2").fetchall()
              for t in tables}
    assert before["segments"] and before["segment_postings"]
    db.close()

    with SqliteStore(old, top_k=0) as s:
        assert s.schema_version() == SCHEMA_VERSION == max(MIGRATIONS)
        assert s.write_version() > 7
        after = sqlite3.connect(old)
        assert {t: after.execute(f"SELECT {cols[t]} FROM {t} ORDER BY 1, 2").fetchall()
                for t in tables} == before
        after.close()
        assert [h.id for h in run_search(s, "object:dog", "shot").hits] == ["bd1@0"]
        assert {e.id: e.status for e in s.episode_states()} == {"bd1": "indexed",
                                                               "bd2": "pending"}
        assert s.embedding_model() is None
        assert s.embeddings("shot")[0] == []
        s.write_episode(embedded(tags_bd2(), BD2))
        assert s.embeddings("episode")[0] == ["bd2"]
        s.write_episode(embedded(tags_bd1(), BD1))
        check(s.embeddings("programme"), ["beach-dogs"],
              normalised(3 * frames_mean(BD1) + frames_mean(BD2)))
    with SqliteStore(old, top_k=0) as s:  # opening again migrates nothing
        assert s.schema_version() == SCHEMA_VERSION and s.embeddings("shot")[0][:1] == ["bd1@0"]


# --- the SQLite file: integrity and read-only opening (issue 14) ---------------------------
def test_sqlite_zero_byte_or_foreign_file_is_corrupt_not_emptied(tmp_path: Path):
    from tvindex.core.store import CatalogueCorrupt

    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(CatalogueCorrupt, match=r"empty\.sqlite: the catalogue is damaged "
                                               r"\(an empty file of 0 bytes"):
        SqliteStore(empty)
    assert empty.stat().st_size == 0
    foreign = tmp_path / "foreign.sqlite"
    foreign.write_text("id,title\n" * 50)
    with pytest.raises(CatalogueCorrupt, match="not a SQLite database"):
        SqliteStore(foreign)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).executescript("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
    with pytest.raises(CatalogueCorrupt, match="no meta table: not a tvindex catalogue"):
        SqliteStore(other)


def test_sqlite_missing_table_is_corrupt(tmp_path: Path):
    from tvindex.core.store import CatalogueCorrupt

    path = tmp_path / "cat.sqlite"
    SqliteStore(path).close()
    sqlite3.connect(path).execute("DROP TABLE segment_postings")
    with pytest.raises(CatalogueCorrupt, match="tables missing: segment_postings"):
        SqliteStore(path)


def test_sqlite_new_catalogue_is_created_whole(tmp_path: Path):
    path = tmp_path / "sub" / "cat.sqlite"
    with SqliteStore(path) as s:
        assert not s.read_only and s.schema_version() == SCHEMA_VERSION
        s.check(thorough=True)
    assert path.read_bytes()[:16] == b"SQLite format 3\x00"
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_sqlite_opens_read_only_when_the_file_is_not_writable(tmp_path: Path):
    import os

    from tvindex.core.store import CatalogueReadOnly

    path = tmp_path / "cat.sqlite"
    with SqliteStore(path) as s:
        s.upsert_catalogue([ProgrammeRecord("p", "P")], [EpisodeRecord("e1", "p", "E1", "/m")])
    path.chmod(0o444)
    try:
        if os.access(path, os.W_OK):
            pytest.skip("running as root: permission bits do not make the file read-only "
                        "(tests/hostile/test_hostile_storage.py mounts read-only instead)")
        with SqliteStore(path) as ro:
            assert ro.read_only
            assert [st.id for st in ro.episode_states()] == ["e1"]
            with pytest.raises(CatalogueReadOnly, match="the catalogue is read-only"):
                ro.request_reindex("e1")
    finally:
        path.chmod(0o644)


def test_sqlite_damaged_page_is_corrupt_and_never_written(tmp_path: Path):
    from tvindex.core.store import CatalogueCorrupt

    path = tmp_path / "cat.sqlite"
    with SqliteStore(path) as s:
        s.upsert_catalogue([ProgrammeRecord("p", "P")],
                           [EpisodeRecord(f"e{i}", "p", f"E{i}", f"/m/{i}.mp4",
                                          description="x" * 3000) for i in range(200)])
    pages = path.stat().st_size // 4096
    with open(path, "r+b") as f:
        f.seek(pages // 2 * 4096)
        f.write(b"\xa5" * 4096 * 4)
    before = path.read_bytes()
    with SqliteStore(path) as s:
        with pytest.raises(CatalogueCorrupt, match="the catalogue is damaged"):
            s.request_reindex("e1")
        with pytest.raises(CatalogueCorrupt):
            s.check()
    assert path.read_bytes() == before
