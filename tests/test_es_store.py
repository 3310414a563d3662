"""What only the Elasticsearch backend has: connection errors, index layout and settings,
atomic episode replacement, partial bulk failures, alias swaps, and the emulator's gaps."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
from es_server import EsServer, FaultProxy, emulator_gap, known_gap
from test_store import OBJ, SCN, embedded, episode_tags, seg, tags_bd1

from search.backends.elasticsearch.documents import generation
from search.backends.elasticsearch.mappings import MAPPING_VERSION, concrete
from search.backends.elasticsearch.store import EsStore
from search.engine import run_search
from tvindex.core.records import EpisodeRecord, ProgrammeRecord
from tvindex.core.store import StoreError, StoreUnavailable
from tvindex.settings import ElasticsearchSettings, load_settings


def fill(store: EsStore) -> None:
    store.upsert_catalogue(
        [ProgrammeRecord("beach-dogs", "Els gossos de la platja", genre="Nature")],
        [EpisodeRecord("bd1", "beach-dogs", "Bicicletes", "/m/a.mp4", dt.date(2021, 5, 1)),
         EpisodeRecord("bd2", "beach-dogs", "Two", "/m/b.mp4", dt.date(2019, 5, 1))])
    store.register_label_sets([OBJ, SCN])
    store.write_episode(episode_tags("bd1", [
        seg(0, [[0.9, 0.9, 0.0, 0.0]], [[0.8, 0.1, 0.1]], 0.0),
        seg(1, [[0.9, 0.3, 0.6, 0.0]], [[0.6, 0.3, 0.1]], 5.0)]))


@pytest.fixture()
def store(es_config: ElasticsearchSettings):
    s = EsStore(es_config, min_score=0.05, top_k=0)
    yield s
    s.close()


def test_unreachable_cluster_is_one_clear_error():
    cfg = ElasticsearchSettings(url="http://127.0.0.1:9", max_retries=2, retry_backoff_s=0.01,
                   request_timeout_s=2, index_prefix="x-")
    t0 = time.perf_counter()
    with pytest.raises(StoreUnavailable, match=r"Elasticsearch at http://127.0.0.1:9 is "
                                               r"unavailable \(connect failed 3 times\)"):
        EsStore(cfg)
    assert time.perf_counter() - t0 < 10


def test_credentials_in_messages_are_redacted():
    cfg = ElasticsearchSettings(url="http://elastic:s3cret@127.0.0.1:9", max_retries=0, index_prefix="x-")
    with pytest.raises(StoreUnavailable) as err:
        EsStore(cfg)
    assert "s3cret" not in str(err.value)


def test_rejected_credentials_say_so(es_server: EsServer, es_prefix: str):
    try:
        EsStore(es_server.config(es_prefix, api_key="bm90OmFrZXk=")).close()
    except StoreError as exc:
        assert "rejected the credentials" in str(exc)
        return
    emulator_gap(es_server, "no security: a wrong API key is accepted")
    pytest.fail("a wrong API key was accepted")


def test_settings_and_environment(monkeypatch):
    monkeypatch.setenv("ELASTICSEARCH_URL", "https://es.example:9243")
    monkeypatch.setenv("TVINDEX__ELASTICSEARCH__API_KEY", "abc")
    monkeypatch.setenv("TVINDEX__ELASTICSEARCH__SHARDS", "6")
    monkeypatch.setenv("TVINDEX__CATALOGUE__BACKEND", "elasticsearch")
    settings = load_settings()
    cfg = settings.elasticsearch
    assert (cfg.url, cfg.api_key, cfg.shards, cfg.replicas) == (
        "https://es.example:9243", "abc", 6, 1)
    monkeypatch.setenv("TVINDEX__ELASTICSEARCH__URL", "ftp://nope")
    with pytest.raises(Exception, match="elasticsearch.url"):
        load_settings()


def test_layout_shards_replicas_and_aliases(es_server: EsServer, es_prefix: str):
    cfg = es_server.config(es_prefix, shards=3, replicas=0)
    with EsStore(cfg) as s:
        for kind in ("programmes", "episodes", "shots"):
            index = concrete(es_prefix, kind)
            assert s.es.indices.get_alias(name=f"{es_prefix}{kind}").body == {
                index: {"aliases": {f"{es_prefix}{kind}": {}}}}
            settings = s.es.indices.get_settings(index=index)[index]["settings"]["index"]
            shards = "3" if kind == "shots" else "1"
            assert (settings["number_of_shards"], settings["number_of_replicas"]) == (shards, "0")
            mapping = s.es.indices.get_mapping(index=index)[index]["mappings"]
            assert mapping["properties"]["rf"]["type"] == "rank_features"
            assert mapping["properties"]["labels"]["type"] == "keyword"
            assert mapping["_meta"]["mapping_version"] == MAPPING_VERSION
            if kind != "programmes":  # embeddings: bytes, no dimension fixed by the mapping
                assert mapping["properties"]["embedding"]["type"] == "binary"
                assert mapping["properties"]["embedding_model"]["type"] == "keyword"
        props = s.es.indices.get_mapping(index=concrete(es_prefix, "programmes"))
        title = props[concrete(es_prefix, "programmes")]["mappings"]["properties"]["title"]
        assert {k: v["analyzer"] for k, v in title["fields"].items() if "analyzer" in v} == {
            "ca": "catalan", "es": "spanish", "en": "english"}
        assert s.schema_version() == MAPPING_VERSION


def test_documents_and_ids(store: EsStore):
    fill(store)
    src = store.es.get(index=store._idx["episodes"], id="bd1")["_source"]
    gen = src["gen"]
    ids = sorted(h["_id"] for h in store.es.search(index=store._idx["shots"])["hits"]["hits"])
    assert ids == [f"bd1@0#{gen}", f"bd1@1#{gen}"]
    shot = store.es.get(index=store._idx["shots"], id=f"bd1@0#{gen}")["_source"]
    dog = str(store._first_ids()["coco80"] + 1)
    assert dog in shot["labels"] and shot["s"][dog] == pytest.approx(0.9)
    assert shot["rf"][dog] == pytest.approx(0.9) and shot["genre_lc"] == ["nature"]
    # a rank_feature query works on the stored scores (9 significant bits: not for ranking)
    resp = store.es.search(index=store._idx["shots"],
                           query={"rank_feature": {"field": f"rf.{dog}", "linear": {}}})
    assert [h["_id"] for h in resp["hits"]["hits"]] == [f"bd1@0#{gen}", f"bd1@1#{gen}"]
    # genre filters compare like SQLite's lower()
    assert [h.id for h in run_search(store, "object:dog genre:NATURE", "shot").hits] == [
        "bd1@0"]  # dog is present (>= 0.5) in bd1@0 only


def test_rewrite_with_new_tags_swaps_generations(store: EsStore):
    fill(store)
    old = store.es.get(index=store._idx["episodes"], id="bd1")["_source"]["gen"]
    tags = episode_tags("bd1", [seg(0, [[0.1, 0.2, 0.9, 0.0]], [[0.1, 0.8, 0.1]], 0.0)])
    store.write_episode(tags)
    src = store.es.get(index=store._idx["episodes"], id="bd1")["_source"]
    assert src["gen"] == generation(tags) != old and src["dirty"] is False
    ids = [h["_id"] for h in store.es.search(index=store._idx["shots"])["hits"]["hits"]]
    assert ids == [f"bd1@0#{src['gen']}"]
    assert [h.id for h in run_search(store, "object:car", "shot").hits] == ["bd1@0"]


def test_a_half_written_episode_is_never_visible(es_server: EsServer, store: EsStore):
    """The shot bulk of a re-write fails half-way: searches keep showing the old generation
    whole, never a mix; the next write completes it."""
    fill(store)
    before = [(h.id, h.score) for h in run_search(store, "object:dog", "shot").hits]
    proxy = FaultProxy(es_server.url)
    try:
        cfg = ElasticsearchSettings(**{**store.cfg.__dict__, "url": proxy.url, "max_retries": 1,
                          "retry_backoff_s": 0.01})
        with EsStore(cfg, min_score=0.05, top_k=0) as writer:
            proxy.fail_bulk = f'"_index":"{store.cfg.index_prefix}shots"'.encode()
            tags = episode_tags("bd1", [seg(i, [[0.5, 0.5, 0.5, 0.5]], [[0.3, 0.3, 0.4]], i)
                                        for i in range(3)])
            with pytest.raises(StoreUnavailable, match=r"write shots of bd1 failed 2 times\): "
                                                       r"es_rejected_execution_exception"):
                writer.write_episode(tags)
            # a partial write: some new shots exist beside the old ones
            gen = generation(tags)
            store.es.index(index=store._idx["shots"], id=f"bd1@0#{gen}", refresh=True,
                           document={**store.es.get(index=store._idx["shots"],
                                                    id=f"bd1@0#{store._get('episodes', 'bd1')['_source']['gen']}")["_source"],
                                     "gen": gen, "index": 0})
            assert [(h.id, h.score) for h in run_search(store, "object:dog", "shot").hits] == before
            assert len(store.segments("bd1")) == 2
            proxy.fail_bulk = None
            writer.write_episode(tags)
        assert [h.id for h in run_search(store, "object:dog", "shot").hits] == [
            "bd1@0", "bd1@1", "bd1@2"]
        assert store.es.count(index=store._idx["shots"])["count"] == 3
    finally:
        proxy.close()


def test_partial_bulk_failure_names_the_documents(store: EsStore):
    actions = [({"index": {"_index": store._idx["shots"], "_id": f"bad-{i}"}},
                {"episode_id": "x", "no_such_field": i}) for i in range(7)]
    with pytest.raises(StoreError, match=r"7 of 7 document\(s\) were not written: bad-0 "
                                         r"\(400: strict_dynamic_mapping_exception.*and 2 more"):
        store.client.bulk(actions, "test bulk")


def test_rebuild_swaps_every_alias_at_once(store: EsStore):
    fill(store)
    old = {k: store._concrete_of(a) for k, a in store._idx.items()}
    with pytest.raises(RuntimeError), store.rebuilding():
        store.upsert_catalogue([ProgrammeRecord("p", "P")], [])
        raise RuntimeError("the re-index failed")
    assert {k: store._concrete_of(a) for k, a in store._idx.items()} == old
    assert [h.id for h in run_search(store, "object:dog", "episode").hits] == ["bd1"]
    with store.rebuilding():
        store.upsert_catalogue(
            [ProgrammeRecord("beach-dogs", "Beach Dogs")],
            [EpisodeRecord("bd2", "beach-dogs", "Two", "/m/b.mp4", dt.date(2019, 5, 1))])
        store.register_label_sets([OBJ, SCN])
        store.write_episode(episode_tags("bd2", [
            seg(0, [[0.2, 0.95, 0.0, 0.0]], [[0.9, 0.05, 0.05]], 0.0)]))
        # readers of the aliases still see the old catalogue while the new one is built
        with EsStore(store.cfg, min_score=0.05, top_k=0) as reader:
            assert [h.id for h in run_search(reader, "object:dog", "episode").hits] == ["bd1"]
    assert [h.id for h in run_search(store, "object:dog", "episode").hits] == ["bd2"]
    for kind, indices in old.items():
        assert store._concrete_of(store._idx[kind]) != indices
        assert not store.es.indices.exists(index=indices[0])


def test_older_mapping_is_migrated_behind_the_alias(es_server: EsServer, es_prefix: str):
    cfg = es_server.config(es_prefix)
    with EsStore(cfg, min_score=0.05, top_k=0) as s:
        fill(s)
        index = concrete(es_prefix, "episodes")
        s.es.indices.put_mapping(index=index, meta={"mapping_version": 0})
    with EsStore(cfg, min_score=0.05, top_k=0) as s:
        (new,) = s._concrete_of(s._idx["episodes"])
        assert new != index and not s.es.indices.exists(index=index)
        assert s.schema_version() == MAPPING_VERSION
        assert [h.id for h in run_search(s, "object:dog", "episode").hits] == ["bd1"]
        # the migrated index takes the new fields
        assert s.embedding_model() is None
        s.write_episode(embedded(tags_bd1(), [[[1, 0]], [[0, 1]]]))
        assert s.embeddings("episode")[0] == ["bd1"]
        assert s.embeddings("shot")[0] == ["bd1@0", "bd1@1"]


def test_newer_mapping_is_refused(es_server: EsServer, es_prefix: str):
    cfg = es_server.config(es_prefix)
    with EsStore(cfg) as s:
        s.es.indices.put_mapping(index=concrete(es_prefix, "shots"),
                                 meta={"mapping_version": MAPPING_VERSION + 1})
    with pytest.raises(StoreError, match="newer than this tvindex"):
        EsStore(cfg)


def test_deep_pages_use_search_after(store: EsStore):
    """More hits than one fetch: pages stay in the SQLite order with no gaps or repeats."""
    store.upsert_catalogue([ProgrammeRecord("p", "P")],
                           [EpisodeRecord("e", "p", "E", "/m/e.mp4", dt.date(2020, 1, 1))])
    store.register_label_sets([OBJ, SCN])
    rng = np.random.default_rng(0)
    segments = []
    for i in range(1500):
        s = seg(i % 256, [[float(rng.uniform(0.5, 1)), 0.5, 0.0, 0.0]], [[0.5, 0.3, 0.2]], i)
        s.index = i
        segments.append(s)
    store.write_episode(episode_tags("e", segments))
    full = run_search(store, "object:person", "shot", limit=500, offset=1000)
    assert full.total == 1500 and len(full.hits) == 500
    scores = [h.score for h in full.hits]
    assert scores == sorted(scores, reverse=True)
    assert run_search(store, "object:person", "shot", limit=1, offset=1499).hits[0].score == min(
        scores)


def test_catalan_titles_are_stemmed(es_server: EsServer, store: EsStore):
    fill(store)
    with known_gap(es_server, "the catalan analyzer does not stem (bicicletes != bicicleta)"):
        resp = store.es.search(index=store._idx["episodes"],
                               query={"match": {"title.ca": "bicicleta"}})
        assert [h["_id"] for h in resp["hits"]["hits"]] == ["bd1"]


def test_painless_script_score(es_server: EsServer, store: EsStore):
    """Why the ranking does not use a script: the emulator's Painless is partial."""
    fill(store)
    script = ("double s = 0; for (def f : params.f) { if (doc.containsKey(f) && "
              "doc[f].size() > 0) { s += Math.log(Math.max(doc[f].value, 1e-6)); } } "
              "return Math.exp(s);")
    dog = f"p.{store._first_ids()['coco80'] + 1}"
    with known_gap(es_server, "Painless: loops over doc fields, doc[f].size(), containsKey, "
                              "1e-6 literals"):
        resp = store.es.search(index=store._idx["shots"], query={"script_score": {
            "query": {"match_all": {}}, "script": {"source": script, "params": {"f": [dog]}}}})
        assert resp["hits"]["hits"][0]["_score"] == pytest.approx(0.9, rel=1e-5)


def test_date_min_max_aggregations(es_server: EsServer, store: EsStore):
    """Why programmes() aggregates air dates client-side: the emulator returns null."""
    fill(store)
    with known_gap(es_server, "min/max aggregations on date fields return null"):
        resp = store.es.search(index=store._idx["episodes"], size=0,
                               aggs={"first": {"min": {"field": "air_date"}}})
        assert resp["aggregations"]["first"]["value_as_string"].startswith("2019-05-01")


def test_facets_count_every_hit(store: EsStore):
    fill(store)
    from search.engine import resolve

    facets = store.facets(resolve(store, "object:dog"), "shot")
    # dog is present in bd1@0 only (0.3 < 0.5 in bd1@1)
    assert facets["programme"] == [("beach-dogs", 1)] and facets["genre"] == [("nature", 1)]
    labels = dict(facets["label"])  # the query's own labels are left out (search/facets.py)
    assert labels["coco80:person"] == 1 and "coco80:dog" not in labels
    assert store.facets(resolve(store, "object:dog"), "episode")["programme"] == [
        ("beach-dogs", 1)]


def test_two_shard_workers_share_a_catalogue(store: EsStore, es_config: ElasticsearchSettings):
    """Another worker (--shard) registering the same catalogue keeps what is indexed."""
    fill(store)
    with EsStore(es_config, min_score=0.05, top_k=0) as other:
        other.upsert_catalogue(
            [ProgrammeRecord("beach-dogs", "Els gossos de la platja", genre="Nature")],
            [EpisodeRecord("bd1", "beach-dogs", "Bicicletes", "/m/a.mp4", dt.date(2021, 5, 1)),
             EpisodeRecord("bd2", "beach-dogs", "Two", "/m/b.mp4", dt.date(2019, 5, 1))])
    assert {s.id: s.status for s in store.episode_states()} == {"bd1": "indexed",
                                                                "bd2": "pending"}


def test_next_run_tidies_what_crashed_writers_left(store: EsStore):
    """A writer that died after its commit (old generation still there) is finished by the
    next upsert_catalogue, and so is one that died before it an hour ago; a recent
    uncommitted write is left to its (maybe live) writer."""
    fill(store)
    idx = store._idx
    src = store.es.get(index=idx["episodes"], id="bd1")["_source"]
    shot = store.es.get(index=idx["shots"], id=f"bd1@0#{src['gen']}")["_source"]

    def orphan(gen: str, since: str) -> None:
        store.es.index(index=idx["shots"], id=f"bd1@0#{gen}", document={**shot, "gen": gen},
                       refresh=True)
        store.es.update(index=idx["episodes"], id="bd1", refresh=True,
                        doc={"dirty": True, "pending_gen": gen, "dirty_since": since})

    def shots() -> list[str]:
        return sorted(h["_id"] for h in store.es.search(index=idx["shots"])["hits"]["hits"])

    committed = [f"bd1@0#{src['gen']}", f"bd1@1#{src['gen']}"]
    now = dt.datetime.now(dt.UTC)
    orphan("recent", now.isoformat(timespec="seconds"))
    store.upsert_catalogue([], [])
    assert "bd1@0#recent" in shots()  # its writer may be alive
    assert [h.id for h in run_search(store, "object:dog", "shot").hits] == ["bd1@0"]
    orphan("old", (now - dt.timedelta(hours=2)).isoformat(timespec="seconds"))
    store.upsert_catalogue([], [])
    assert shots() == committed
    assert store.es.get(index=idx["episodes"], id="bd1")["_source"]["dirty"] is False



def test_generation_covers_embeddings():
    """Same tags, same generation; other embeddings (or model), another one; tags without
    embeddings keep the generation they had before embeddings were stored."""
    plain = tags_bd1()
    assert generation(plain) == "9e7f1de16051266f"  # as before mapping version 2
    a = generation(embedded(tags_bd1(), [[[1, 0]], [[0, 1]]]))
    assert a == generation(embedded(tags_bd1(), [[[1, 0]], [[0, 1]]])) != generation(plain)
    assert a != generation(embedded(tags_bd1(), [[[1, 0]], [[1, 1]]]))
    assert a != generation(embedded(tags_bd1(), [[[1, 0]], [[0, 1]]], model="m2"))


def test_shot_embeddings_page_and_read_only_what_they_need(store: EsStore, monkeypatch):
    """More shots than one page, in (episode id, integer index) order; only the needed fields
    are read; an uncommitted generation's shots are never returned."""
    store.upsert_catalogue([ProgrammeRecord("p", "P")],
                           [EpisodeRecord("e", "p", "E", "/m/e.mp4", dt.date(2020, 1, 1)),
                            EpisodeRecord("d", "p", "D", "/m/d.mp4", dt.date(2020, 1, 1))])
    store.register_label_sets([OBJ, SCN])
    rng = np.random.default_rng(0)
    n = 1203
    frames = rng.standard_normal((n, 8))
    segments = []
    for i in range(n):
        s = seg(0, [[0.5, 0.5, 0.0, 0.0]], [[0.5, 0.3, 0.2]], i)
        s.index = i
        segments.append(s)
    store.write_episode(embedded(episode_tags("e", segments), [[list(f)] for f in frames]))
    store.write_episode(embedded(episode_tags("d", [seg(0, [[0.5, 0.5, 0.0, 0.0]],
                                                        [[0.5, 0.3, 0.2]], 0)]), [[[1] * 8]]))
    calls: list[dict] = []
    call = store._call

    def spy(what, fn, **kwargs):
        calls.append({"what": what, **kwargs})
        return call(what, fn, **kwargs)

    monkeypatch.setattr(store, "_call", spy)
    names, m = store.embeddings("shot")
    assert names == ["d@0"] + [f"e@{i}" for i in range(n)]
    expected = frames / np.linalg.norm(frames, axis=1, keepdims=True)
    np.testing.assert_allclose(m[1:], expected, atol=1e-6)
    shot_reads = [c for c in calls if c["what"] == "search shots"]
    assert len(shot_reads) == 2 and "search_after" in shot_reads[1]
    assert all(set(c["source"]) == {"episode_id", "index", "gen", "embedding"}
               for c in shot_reads)
    monkeypatch.undo()
    # a generation being written beside the committed one stays invisible
    gen = store._get("episodes", "d")["_source"]["gen"]
    doc = store.es.get(index=store._idx["shots"], id=f"d@0#{gen}")["_source"]
    store.es.index(index=store._idx["shots"], id="d@1#other", refresh=True,
                   document={**doc, "index": 1, "gen": "other"})
    assert store.embeddings("shot", ["d"])[0] == ["d@0"]
    store.es.update(index=store._idx["episodes"], id="d", refresh=True,
                    doc={"dirty": True, "pending_gen": "other"})
    assert store.embeddings("shot", ["d"])[0] == ["d@0"]
