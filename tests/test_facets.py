"""Facets (issue 15 item 6): exact counts on a small hand-built catalogue at every level,
narrowing by a facet gives its count as the new total, the same numbers on SQLite and
Elasticsearch, and the API / CLI parameters."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_store import OBJ, SCN, episode_tags, seg

from search.backends.sqlite.store import SqliteStore
from search.engine import resolve, run_search
from search.facets import FACETS, narrow, parse_facets, run_facets
from tvindex.core.records import EpisodeRecord, ProgrammeRecord
from tvindex.core.store import StoreError

REPO = Path(__file__).resolve().parent.parent


def fill(store) -> None:
    """4 episodes over 3 programmes; coco80 (person, dog, car, bicycle) present at >= 0.5,
    places365 (beach, street, kitchen) at >= 0.2."""
    store.upsert_catalogue(
        [ProgrammeRecord("beach", "Beach life", genre="Nature; Sport"),
         ProgrammeRecord("city", "City news", genre="News"),
         ProgrammeRecord("quiz", "The quiz", genre="")],
        [EpisodeRecord("b1", "beach", "B one", "/m/b1.mp4", dt.date(2021, 5, 1)),
         EpisodeRecord("b2", "beach", "B two", "/m/b2.mp4", dt.date(2019, 5, 1)),
         EpisodeRecord("c1", "city", "C one", "/m/c1.mp4", dt.date(2021, 2, 1)),
         EpisodeRecord("q1", "quiz", "Q one", "/m/q1.mp4", None)])
    store.register_label_sets([OBJ, SCN])
    store.write_episode(episode_tags("b1", [
        seg(0, [[0.9, 0.9, 0.0, 0.0]], [[0.8, 0.1, 0.1]], 0.0),
        seg(1, [[0.9, 0.3, 0.6, 0.0]], [[0.6, 0.3, 0.1]], 5.0)]))
    store.write_episode(episode_tags("b2", [
        seg(0, [[0.2, 0.95, 0.0, 0.0]], [[0.9, 0.05, 0.05]], 0.0)]))
    store.write_episode(episode_tags("c1", [
        seg(0, [[0.99, 0.0, 0.9, 0.8]], [[0.0, 0.9, 0.1]], 0.0),
        seg(1, [[0.95, 0.6, 0.9, 0.0]], [[0.1, 0.8, 0.1]], 5.0)]))
    store.write_episode(episode_tags("q1", [
        seg(0, [[0.7, 0.0, 0.0, 0.0]], [[0.1, 0.1, 0.8]], 0.0)]))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = SqliteStore(tmp_path_factory.mktemp("facets") / "c.sqlite", min_score=0.05, top_k=0)
    fill(s)
    yield s
    s.close()


PERSON_SHOT = {
    "programme": [("beach", 2), ("city", 2), ("quiz", 1)],
    "genre": [("nature", 2), ("news", 2), ("sport", 2)],
    "year": [("2021", 4)],
    "label": [("coco80:car", 3), ("places365:street", 3), ("coco80:dog", 2),
              ("places365:beach", 2), ("coco80:bicycle", 1), ("places365:kitchen", 1)],
}


def facets(store, text: str, level: str = "shot", size: int = 10, **kw):
    return store.facets(resolve(store, text), level, size, **kw)


def test_shot_facets_exact(store):
    assert facets(store, "object:person") == PERSON_SHOT
    # one matched shot: its own presence rows are read (not a mask over every pair)
    assert facets(store, "object:bicycle")["label"] == [
        ("coco80:car", 1), ("coco80:person", 1), ("places365:street", 1)]
    # size cuts each list (ties by value)
    assert facets(store, "object:person", size=2)["label"] == [("coco80:car", 3),
                                                               ("places365:street", 3)]


def test_episode_and_programme_facets_exact(store):
    got = facets(store, "object:person", "episode")
    # b2's person stays under 0.5: episodes b1, c1, q1
    assert got["programme"] == [("beach", 1), ("city", 1), ("quiz", 1)]
    assert got["genre"] == [("nature", 1), ("news", 1), ("sport", 1)]
    assert got["year"] == [("2021", 2)]
    got = facets(store, "object:person", "programme")
    assert got["programme"] == [("beach", 1), ("city", 1), ("quiz", 1)]
    # a programme counts once per year one of its episodes aired
    assert got["year"] == [("2021", 2), ("2019", 1)]


def test_filters_exclusion_and_floor(store):
    assert facets(store, "genre:news")["programme"] == [("city", 2)]
    got = facets(store, "object:person -object:car")
    assert got["programme"] == [("beach", 1), ("quiz", 1)]
    assert ("coco80:car", 1) not in got["label"] and all(
        v != "coco80:car" for v, _ in got["label"])
    # the floor drops q1 (0.7) and keeps the four shots at 0.9 and more
    got = facets(store, "object:person", min_score=0.8)
    assert got["programme"] == [("beach", 2), ("city", 2)]
    assert got["year"] == [("2021", 4)]


@pytest.mark.parametrize("level", ["shot", "episode", "programme"])
def test_narrowing_gives_the_facets_count(store, level):
    text = "object:person"
    for name, rows in facets(store, text, level).items():
        for value, count in rows:
            narrowed = narrow(text, name, value)
            assert run_search(store, narrowed, level).total == count, (name, value, narrowed)


def test_facets_follow_writes(tmp_path):
    s = SqliteStore(tmp_path / "c.sqlite", min_score=0.05, top_k=0)
    fill(s)
    assert facets(s, "object:person")["programme"][0] == ("beach", 2)
    s.write_episode(episode_tags("b2", [  # re-indexed: person now present in b2 too
        seg(0, [[0.8, 0.95, 0.0, 0.0]], [[0.9, 0.05, 0.05]], 0.0)]))
    got = facets(s, "object:person")
    assert got["programme"] == [("beach", 3), ("city", 2), ("quiz", 1)]
    assert got["year"] == [("2021", 4), ("2019", 1)]
    s.close()


def test_parse_and_errors(store):
    assert parse_facets("1") == FACETS and parse_facets("") == ()
    assert parse_facets("label,programme") == ("programme", "label")
    with pytest.raises(StoreError, match="unknown facet 'colour'"):
        parse_facets("colour")
    out = run_facets(store, "object:person", "shot", ("programme", "year"))
    assert out["programme"][0] == {"value": "beach", "count": 2, "title": "Beach life",
                                   "query": "object:person programme:beach"}
    assert out["year"] == [{"value": "2021", "count": 4,
                            "query": "object:person after:2021-01-01 before:2021-12-31"}]
    with pytest.raises(StoreError, match="then"):
        run_facets(store, "object:person then object:dog")


def test_api_facets(tmp_path):
    from test_webui_catalogue import web_settings

    from webui.app import create_app

    s = SqliteStore(tmp_path / "catalogue.sqlite", min_score=0.05, top_k=0)
    fill(s)
    client = create_app(web_settings(tmp_path), s).test_client()
    body = client.get("/api/v1/search?q=object:person&facets=programme,label").get_json()
    assert body["total"] == 5
    assert [(r["value"], r["count"]) for r in body["facets"]["programme"]] == \
        PERSON_SHOT["programme"]
    assert set(body["facets"]) == {"programme", "label"}
    assert "facets" not in client.get("/api/v1/search?q=object:person").get_json()
    bad = client.get("/api/v1/search?q=object:person&facets=colour")
    assert bad.status_code == 400 and "unknown facet 'colour'" in bad.get_json()["detail"]
    bad = client.get("/api/v1/search?q=object:person+then+object:dog&facets=1")
    assert bad.status_code == 400


def test_cli_facets(tmp_path):
    s = SqliteStore(tmp_path / "catalogue.sqlite", min_score=0.05, top_k=0)
    fill(s)
    s.close()
    run = [sys.executable, "-m", "tvindex.cli", "search", "object:person", "--data-dir",
           str(tmp_path), "--facets"]
    proc = subprocess.run(run + ["--json"], capture_output=True, text=True, cwd=REPO,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert [(r["value"], r["count"]) for r in body["facets"]["year"]] == [("2021", 4)]
    proc = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "programme: beach (Beach life) 2, city (City news) 2, quiz (The quiz) 1" \
        in proc.stdout


PARITY = ["object:person", "object:person -object:car", "object:car OR object:bicycle",
          "genre:news", "object:dog after:2020-01-01", "scene:street object:person",
          'programme:beach -scene:kitchen', "object:person ~object:car"]


@pytest.fixture()
def es_store(es_config):
    from search.backends.elasticsearch.store import EsStore

    s = EsStore(es_config, min_score=0.05, top_k=0)
    fill(s)
    yield s
    s.close()


@pytest.mark.parametrize("level", ["shot", "episode", "programme"])
def test_same_facets_on_sqlite_and_elasticsearch(store, es_store, level):
    names = ("programme", "genre", "label")  # year: test_year_facet_parity
    for text in PARITY:
        want = store.facets(resolve(store, text), level, 10, names=names)
        got = es_store.facets(resolve(es_store, text), level, 10, names=names)
        assert got == want, text


def test_year_facet_parity(store, es_store):
    for level in ("shot", "episode", "programme"):
        for text in PARITY:
            want = store.facets(resolve(store, text), level, 10, names=("year",))
            got = es_store.facets(resolve(es_store, text), level, 10, names=("year",))
            assert got == want and want, (level, text)


def test_min_score_facet_parity(store, es_store):
    for text, floor in (("object:person", 0.8), ("object:person object:car", 0.9)):
        want = store.facets(resolve(store, text), "shot", 10, min_score=floor,
                            names=("programme", "label"))
        got = es_store.facets(resolve(es_store, text), "shot", 10, min_score=floor,
                              names=("programme", "label"))
        assert got == want and got != es_store.facets(
            resolve(es_store, text), "shot", 10, names=("programme", "label")), text
