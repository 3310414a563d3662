"""Recommendations and the vector indexes beside the store, on a hand-built catalogue.

Embeddings are planted so that the right answers are known: programme "cooking" episodes
point one way, "sport" another, "news" in between, and label scores agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_store import OBJ, SCN, episode_tags, seg

from search.backends.sqlite.store import SqliteStore
from search.recommend import Recommender, RecommendError, label_profiles, tfidf_weights
from search.vector_catalogue import VectorCatalogue
from tvindex.core.records import EpisodeRecord, ProgrammeRecord
from tvindex.core.store import NotFound
from tvindex.core.vectors import unit_rows

DIM = 8
MODEL = "test-embedder:abc"
PROGRAMMES = {"cooking": 0, "sport": 1, "news": 2}


def direction(programme: str, rng: np.random.Generator) -> np.ndarray:
    base = np.zeros(DIM, np.float32)
    base[PROGRAMMES[programme]] = 1.0
    return base + 0.1 * rng.standard_normal(DIM).astype(np.float32)


def tags_for(episode_id: str, programme: str, shots: int, rng: np.random.Generator,
             model: str = MODEL):
    objs = {"cooking": [0.9, 0.1, 0.0, 0.0], "sport": [0.9, 0.0, 0.1, 0.8],
            "news": [0.9, 0.1, 0.6, 0.1]}[programme]
    scns = {"cooking": [0.0, 0.1, 0.9], "sport": [0.2, 0.7, 0.1],
            "news": [0.1, 0.8, 0.1]}[programme]
    segments = []
    for i in range(shots):
        s = seg(i, [objs], [scns], 5.0 * i)
        s.embedding = unit_rows(direction(programme, rng)[None, :], strict=True)[0]
        segments.append(s)
    tags = episode_tags(episode_id, segments)
    tags.embedding = np.mean([s.embedding for s in segments], axis=0).astype(np.float32)
    tags.embedding_model = model
    return tags


@pytest.fixture(params=["sqlite", "elasticsearch"])
def catalogue(request: pytest.FixtureRequest, tmp_path: Path):
    """The hand-built catalogue in each store backend (the vector indexes and the recommender
    only talk to the store interface, so both must give the same answers)."""
    rng = np.random.default_rng(0)
    if request.param == "sqlite":
        store = SqliteStore(tmp_path / "cat.sqlite", top_k=0)
    else:
        from search.backends.elasticsearch.store import EsStore

        store = EsStore(request.getfixturevalue("es_config"), top_k=0)
    layout = {"cooking": ["c1", "c2", "c3"], "sport": ["s1", "s2"], "news": ["n1"]}
    store.upsert_catalogue(
        [ProgrammeRecord(p, p.title(), genre="g") for p in layout],
        [EpisodeRecord(e, p, e.upper(), str(tmp_path / f"{e}.mp4"))
         for p, eps in layout.items() for e in eps])
    store.register_label_sets([OBJ, SCN])
    for p, eps in layout.items():
        for e in eps:
            store.write_episode(tags_for(e, p, 4, rng))
    vectors = VectorCatalogue(store, tmp_path / "vectors", check_interval_s=0.0)
    yield store, vectors, rng
    store.close()


def brute_force(store, level, query, k, exclude=()):
    ids, x = store.embeddings(level)
    scores = x @ query
    order = sorted((-float(s), i) for s, i in zip(scores, ids) if i not in exclude)
    return [i for _, i in order[:k]]


def test_sync_indexes_every_level_and_matches_numpy(catalogue):
    store, vectors, _ = catalogue
    report = vectors.sync()
    assert report.rebuilt and report.model == MODEL
    assert report.counts == {"shot": 24, "episode": 6, "programme": 3}
    ids, x = store.embeddings("shot")
    assert vectors.index("shot").ids() == sorted(ids)
    for q in x[:5]:
        got = [i for i, _ in vectors.search("shot", q, 7)[0]]
        assert got == brute_force(store, "shot", q, 7)
    assert vectors.is_current()


def test_sync_follows_reindex_and_removal_like_a_rebuild(catalogue, tmp_path):
    store, vectors, rng = catalogue
    vectors.sync()
    # Re-index c1 with fewer shots pointing elsewhere, fail s2, remove n1.
    store.write_episode(tags_for("c1", "sport", 2, rng))
    store.mark_failed("s2", "broken file")
    store.remove_episode("n1")
    assert not vectors.is_current()
    report = vectors.sync()
    assert not report.rebuilt
    assert report.added_episodes == ["c1"] and report.removed_episodes == ["n1", "s2"]
    shot_ids = vectors.index("shot").ids()
    assert "c1@3" not in shot_ids and "c1@1" in shot_ids  # no stale ids
    assert not any(i.startswith(("s2@", "n1@")) for i in shot_ids)
    assert shot_ids == sorted(store.embeddings("shot")[0])  # none missing
    incremental = {level: vectors.index(level).ids() for level in ("shot", "episode",
                                                                   "programme")}
    q = store.embeddings("shot")[1][0]
    incremental_hits = vectors.search("shot", q, 10)[0]
    fresh = VectorCatalogue(store, tmp_path / "rebuilt")
    fresh.rebuild()
    for level, ids in incremental.items():
        assert fresh.index(level).ids() == ids
    assert [i for i, _ in fresh.search("shot", q, 10)[0]] == [i for i, _ in incremental_hits]
    np.testing.assert_allclose([s for _, s in fresh.search("shot", q, 10)[0]],
                               [s for _, s in incremental_hits], atol=1e-6)


def test_other_process_sees_a_sync(catalogue):
    store, vectors, _ = catalogue
    vectors.sync()
    reader = VectorCatalogue(store, vectors.dir)
    assert len(reader.index("shot")) == 24
    store.remove_episode("c3")
    vectors.sync()
    assert len(reader.index("shot")) == 20  # reloaded after the other instance's sync


def test_model_change_rebuilds(catalogue):
    store, vectors, rng = catalogue
    vectors.sync()
    store.write_episode(tags_for("c1", "cooking", 4, rng, model="other-model:1"))
    assert store.embedding_model() == "other-model:1"
    report = vectors.sync()
    assert report.rebuilt
    assert vectors.index("shot").ids() == ["c1@0", "c1@1", "c1@2", "c1@3"]


def test_tfidf_downweights_labels_present_everywhere():
    scores = np.array([[0.9, 0.8, 0.0], [0.9, 0.0, 0.7], [0.9, 0.0, 0.0]])
    idf = tfidf_weights(scores, 0.05)
    assert idf[0] == pytest.approx(1.0)  # in all 3 items: ln(4/4) + 1
    assert idf[1] == pytest.approx(np.log(4 / 2) + 1)
    assert idf[1] > idf[0]


def test_label_profiles_are_unit_and_sorted(catalogue):
    store, _, _ = catalogue
    ids, x = label_profiles(store, "programme")
    assert ids == ["cooking", "news", "sport"]
    assert x.shape == (3, len(OBJ) + len(SCN))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)


def test_similar_programmes_excludes_itself_and_is_deterministic(catalogue):
    store, vectors, _ = catalogue
    rec = Recommender(store, vectors)
    first = rec.similar_programmes("cooking", 5)
    assert [p["id"] for p in first] and "cooking" not in [p["id"] for p in first]
    assert first == rec.similar_programmes("cooking", 5)
    for item in first:
        assert item["similarity"] == pytest.approx(
            rec.blend(item["embedding_similarity"], item["label_similarity"]), abs=1e-4)
    assert [p["id"] for p in rec.similar_programmes("sport", 1)] == ["news"]
    with pytest.raises(NotFound):
        rec.similar_programmes("nope")


def test_blend_weights_are_configurable(catalogue):
    store, vectors, _ = catalogue
    emb_only = Recommender(store, vectors, embedding_weight=1.0, label_weight=0.0)
    labels_only = Recommender(store, vectors, embedding_weight=0.0, label_weight=1.0)
    for item in emb_only.similar("episode", "c1", 10):
        assert item["similarity"] == item["embedding_similarity"]
    for item in labels_only.similar("episode", "c1", 10):
        assert item["similarity"] == item["label_similarity"]
    with pytest.raises(ValueError):
        Recommender(store, vectors, embedding_weight=0.0, label_weight=0.0)


def test_similar_episodes_prefer_the_same_programme(catalogue):
    store, vectors, _ = catalogue
    rec = Recommender(store, vectors)
    got = rec.similar_episodes("c1", 5)
    assert sorted(e["id"] for e in got[:2]) == ["c2", "c3"]
    assert all(e["programme_id"] for e in got)


def test_similar_shots_exclude_self_and_optionally_the_episode(catalogue):
    store, vectors, _ = catalogue
    rec = Recommender(store, vectors)
    hits = rec.similar_shots("c1@0", 6)  # syncs the index on first use
    ids = [h.id for h in hits]
    assert "c1@0" not in ids and len(ids) == 6
    assert ids == brute_force(store, "shot", rec.shot_embedding("c1@0"), 6, {"c1@0"})
    assert all(h.programme_id == "cooking" for h in hits[:5])
    assert hits[0].evidence and hits[0].start_s is not None
    others = rec.similar_shots("c1@0", 6, exclude_episode=True)
    assert not any(h.episode_id == "c1" for h in others)
    with pytest.raises(NotFound):
        rec.similar_shots("c1@99")
    with pytest.raises(NotFound):
        rec.similar_shots("zz@0")


def test_query_by_vector_and_embedder_checks(catalogue):
    store, vectors, _ = catalogue
    rec = Recommender(store, vectors)
    q = np.zeros(DIM, np.float32)
    q[PROGRAMMES["sport"]] = 1.0
    hits = rec.shots_like(q, 3)
    assert [h.programme_id for h in hits] == ["sport"] * 3

    class Fake:
        def __init__(self, identity):
            self._identity = identity

        def identity(self):
            return self._identity

        def predict_with_embeddings(self, frames):
            return {}, np.ones((len(frames), DIM), np.float32)

    image = np.zeros((8, 8, 3), np.uint8)
    v = Recommender(store, vectors, embedder=Fake(MODEL)).embed_image(image)
    np.testing.assert_allclose(np.linalg.norm(v), 1.0, atol=1e-6)
    with pytest.raises(RecommendError, match="re-index"):
        Recommender(store, vectors, embedder=Fake("another:1")).embed_image(image)
    with pytest.raises(RecommendError, match="no embedding tagger"):
        Recommender(store, vectors).embed_image(image)


def test_the_embedder_provider_is_called_once_on_the_first_picture_query(catalogue):
    from tvindex.settings import RecommendSettings

    store, vectors, _ = catalogue
    calls = []

    class Fake:
        def identity(self):
            return MODEL

        def predict_with_embeddings(self, frames):
            return {}, np.ones((len(frames), DIM), np.float32)

    def provide():
        calls.append(1)
        return Fake()

    section = RecommendSettings(embedding_weight=0.6, label_weight=0.4, idf_min_score=0.1)
    rec = Recommender.from_settings(store, section, vectors, embedder_provider=provide)
    assert (rec.embedding_weight, rec.label_weight, rec.idf_min_score) == (0.6, 0.4, 0.1)
    rec.similar_programmes("cooking", 2)
    rec.similar_shots("c1@0", 2)
    assert calls == []  # nothing but a picture needs the network
    image = np.zeros((8, 8, 3), np.uint8)
    first = rec.embed_image(image)
    np.testing.assert_array_equal(first, unit_rows(np.ones(DIM), dtype=np.float32))
    np.testing.assert_array_equal(rec.embed_image(image), first)
    assert calls == [1]
    none = Recommender.from_settings(store, section, vectors, embedder_provider=lambda: None)
    with pytest.raises(RecommendError, match="no embedding tagger"):
        none.embed_image(image)
