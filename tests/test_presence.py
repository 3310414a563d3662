"""Precise relevance (issue 15, item 1): a label counts where it is *present* (some frame
reached its set's coverage threshold: the Labels page's rule), ``-term`` removes items where
the term is present, ``~term`` only lowers the score, ``min_score`` is a floor, results sort by
score, air date or duration, and evidence names every query term. Each behaviour runs on
SQLite and on Elasticsearch (the noida-db emulator), and the two give the same answers."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_store import OBJ, SCN
from test_webui_api import get_error, get_ok
from test_webui_catalogue import ApiSchemas, web_settings

from search.backends.sqlite.store import SqliteStore
from search.engine import resolve, run_search
from search.query import QueryError
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.store import CatalogueStore, StoreError
from webui import create_app

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "elasticsearch"]

# person, dog, car, bicycle per frame (coco80, sigmoid, threshold 0.5); one frame per shot.
# (episode, duration_s, [(start_s, end_s, [p, d, c, b])])
SHOTS = {
    "e1": (20.0, [(0, 5, [0.9, 0.8, 0.0, 0.0]), (5, 10, [0.3, 0.1, 0.7, 0.0]),
                  (10, 15, [0.8, 0.0, 0.0, 0.0]), (15, 20, [0.6, 0.2, 0.4, 0.0])]),
    "e2": (10.0, [(0, 5, [0.7, 0.0, 0.9, 0.0]), (5, 8, [0.04, 0.0, 0.0, 0.9])]),
    "e3": (22.0, [(0, 5, [0.0, 0.0, 0.8, 0.0]), (12, 17, [0.95, 0.0, 0.0, 0.0]),
                  (17, 22, [0.55, 0.0, 0.6, 0.0])]),
}
AIRED = {"e1": dt.date(2021, 5, 1), "e2": dt.date(2019, 5, 1), "e3": dt.date(2022, 1, 1)}
PROGRAMME = {"e1": "beach", "e2": "beach", "e3": "city"}


def tags(eid: str) -> EpisodeTags:
    duration, shots = SHOTS[eid]
    segs = []
    for i, (t0, t1, obj) in enumerate(shots):
        scn = [0.8, 0.1, 0.1] if PROGRAMME[eid] == "beach" else [0.1, 0.8, 0.1]
        segs.append(SegmentTags(i, float(t0), float(t1), (t0 + t1) / 2,
                                {"coco80": aggregate(np.array([obj], np.float32), 0.5),
                                 "places365": aggregate(np.array([scn], np.float32), 0.2)}))
    stats = {name: aggregate(np.stack([s.stats[name].score for s in segs]),
                             0.5 if name == "coco80" else 0.2) for name in ("coco80", "places365")}
    return EpisodeTags(eid, f"fp-{eid}", "v1", duration, segs, stats, "shots")


def fill(store: CatalogueStore) -> CatalogueStore:
    store.upsert_catalogue(
        [ProgrammeRecord("beach", "Beach Dogs", genre="nature"),
         ProgrammeRecord("city", "City", genre="news")],
        [EpisodeRecord(e, PROGRAMME[e], e.upper(), f"/m/{e}.mp4", AIRED[e]) for e in SHOTS])
    store.register_label_sets([OBJ, SCN])
    for e in SHOTS:
        store.write_episode(tags(e))
    return store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CatalogueStore]:
    if request.param == "sqlite":
        s: CatalogueStore = SqliteStore(tmp_path / "catalogue.sqlite", top_k=0)
    else:
        from search.backends.elasticsearch.store import EsStore

        s = EsStore(request.getfixturevalue("es_config"), top_k=0)
    yield fill(s)
    s.close()


@pytest.fixture()
def both(tmp_path: Path, es_config) -> Iterator[tuple[CatalogueStore, CatalogueStore]]:
    from search.backends.elasticsearch.store import EsStore

    a = fill(SqliteStore(tmp_path / "catalogue.sqlite", top_k=0))
    b = fill(EsStore(es_config, top_k=0))
    yield a, b
    a.close()
    b.close()


def ids(page) -> list[str]:
    return [h.id for h in page.hits]


def present(label: int) -> set[str]:
    """Shots where a coco80 label is present, from the data above (some frame >= 0.5)."""
    return {f"{e}@{i}" for e, (_, shots) in SHOTS.items()
            for i, (_, _, p) in enumerate(shots) if p[label] >= 0.5}


PERSON, DOG, CAR, BICYCLE = range(4)


# --- presence -------------------------------------------------------------------------------
def test_one_label_totals_equal_the_label_counts(store: CatalogueStore):
    """For every label, a one-label search finds as many shots and episodes as the Labels
    page counts (``labels()``): one rule of presence."""
    checked = 0
    for info in store.labels():
        query = f"{info.label_set}:{info.name}"
        try:
            shots = run_search(store, query, "shot").total
            episodes = run_search(store, query, "episode").total
        except QueryError:  # a label name that needs quoting is not the point here
            continue
        assert (shots, episodes) == (info.shots, info.episodes), query
        checked += 1
    assert checked == len(OBJ.labels) + len(SCN.labels)


def test_required_terms_must_be_present(store: CatalogueStore):
    page = run_search(store, "object:person", "shot", limit=50)
    assert set(ids(page)) == present(PERSON) and page.total == 6
    # e2@1 carries person at 0.04 (below the store's floor) and e1@1 at 0.3 (kept, absent)
    assert "e1@1" not in ids(page) and "e2@1" not in ids(page)
    both_present = present(PERSON) & present(CAR)
    assert set(ids(run_search(store, "object:person object:car", "shot"))) == both_present


def test_hard_exclusion_removes_every_item_where_the_term_is_present(store: CatalogueStore):
    page = run_search(store, "object:person -object:car", "shot", limit=50)
    assert set(ids(page)) == present(PERSON) - present(CAR) == {"e1@0", "e1@2", "e1@3", "e3@1"}
    # e1@3 carries car at 0.4 (not present): kept, and its evidence says so
    hit = next(h for h in page.hits if h.id == "e1@3")
    ev = {(e.term, e.excluded, e.soft): e.score for e in hit.evidence}
    assert ev == {("object:person", False, False): pytest.approx(0.6),
                  ("object:car", True, False): pytest.approx(0.4)}
    # hard exclusions leave the scores of the rest alone
    assert hit.score == pytest.approx(0.6)
    # at episode level: car is present in every episode
    assert run_search(store, "object:person -object:car", "episode").total == 0


def test_soft_exclusion_only_lowers_the_score(store: CatalogueStore):
    page = run_search(store, "object:person ~object:car", "shot", limit=50)
    assert set(ids(page)) == present(PERSON)
    scores = {h.id: h.score for h in page.hits}
    assert scores["e1@3"] == pytest.approx(np.sqrt(0.6 * (1 - 0.4)), rel=1e-4)
    assert scores["e2@0"] == pytest.approx(np.sqrt(0.7 * (1 - 0.9)), rel=1e-4)
    assert scores["e1@0"] == pytest.approx(np.sqrt(0.9 * 1.0), rel=1e-4)  # no car at all
    ev = next(h for h in page.hits if h.id == "e2@0").evidence
    assert [(e.term, e.excluded, e.soft) for e in ev] == [
        ("object:person", False, False), ("object:car", True, True)]


def test_min_score_is_a_floor_and_the_total_counts_what_is_left(store: CatalogueStore):
    page = run_search(store, "object:person", "shot", min_score=0.75)
    assert ids(page) == ["e3@1", "e1@0", "e1@2"] and page.total == 3
    page = run_search(store, "object:person", "shot", min_score=0.75, limit=1, offset=1)
    assert ids(page) == ["e1@0"] and page.total == 3
    assert run_search(store, "object:person", "shot", min_score=1.0).total == 0
    with pytest.raises(StoreError, match="min_score"):
        run_search(store, "object:person", "shot", min_score=1.5)


def test_episode_and_programme_hits_carry_their_best_shot(store: CatalogueStore):
    page = run_search(store, "object:person", "episode")
    best = {h.id: h.best_shot for h in page.hits}
    assert best["e1"]["id"] == "e1@0" and best["e1"]["score"] == pytest.approx(0.9)
    assert (best["e1"]["start_s"], best["e1"]["end_s"]) == (0.0, 5.0)
    assert best["e3"]["id"] == "e3@1"
    page = run_search(store, "object:person", "programme")
    assert {h.id: h.best_shot["id"] for h in page.hits} == {"beach": "e1@0", "city": "e3@1"}
    assert all(h.best_shot is None for h in run_search(store, "object:person", "shot").hits)


# --- sorting ----------------------------------------------------------------------------------
def test_sort_by_air_date_and_duration(store: CatalogueStore):
    def order(level: str, sort: str, q: str = "object:person") -> list[str]:
        return ids(run_search(store, q, level, sort=sort, limit=50))

    assert order("episode", "air_date") == ["e3", "e1", "e2"]  # newest first
    assert order("episode", "air_date:asc") == ["e2", "e1", "e3"]
    assert order("episode", "duration") == ["e3", "e1", "e2"]  # 22, 20, 10 s
    assert order("episode", "duration:asc") == ["e2", "e1", "e3"]
    assert order("programme", "air_date") == ["city", "beach"]  # latest episode 2022, 2021
    assert order("programme", "duration:asc") == ["city", "beach"]  # 22 s, 30 s
    # shots: newest episode first, ties (same episode) by score
    assert order("shot", "air_date") == ["e3@1", "e3@2", "e1@0", "e1@2", "e1@3", "e2@0"]
    # shot lengths: e2@1 lasts 3 s, e1@0 5 s
    assert order("shot", "duration:asc", "object:bicycle OR object:dog") == ["e2@1", "e1@0"]
    assert order("shot", "duration", "object:bicycle OR object:dog") == ["e1@0", "e2@1"]
    assert order("shot", "score") == ids(run_search(store, "object:person", "shot", limit=50))


def test_sort_with_a_page_and_a_floor(store: CatalogueStore):
    full = ids(run_search(store, "object:person", "shot", sort="air_date:asc", limit=50))
    page = run_search(store, "object:person", "shot", sort="air_date:asc", limit=2, offset=2)
    assert ids(page) == full[2:4] and page.total == 6
    page = run_search(store, "object:person", "shot", sort="air_date:asc", min_score=0.75)
    assert ids(page) == ["e1@0", "e1@2", "e3@1"] and page.total == 3
    with pytest.raises(StoreError, match="sort must be one of"):
        run_search(store, "object:person", "shot", sort="colour")


# --- parity ---------------------------------------------------------------------------------
PARITY = ["object:person", "object:person -object:car", "object:person ~object:car",
          "object:car OR object:bicycle -object:dog", "object:person scene:beach ~object:dog",
          "genre:news", "object:car then object:person", "object:car then object:person within 10s"]


@pytest.mark.parametrize("level", ["shot", "episode", "programme"])
def test_sqlite_and_elasticsearch_agree(both, level: str):
    sqlite, es = both

    def answer(store, q: str, **kw):
        try:
            page = run_search(store, q, level, limit=50, **kw)
        except QueryError as exc:
            return str(exc)
        return page.total, [(h.id, h.score, [(e.term, e.label, e.score) for e in h.evidence],
                             h.best_shot, h.then) for h in page.hits]

    for q in PARITY:
        for kw in ({}, {"min_score": 0.6}, {"sort": "air_date:asc"}, {"sort": "duration"}):
            assert answer(sqlite, q, **kw) == answer(es, q, **kw), (q, kw)


# --- CLI and API ------------------------------------------------------------------------------
def tvindex(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, check=False)


def test_cli_min_score_sort_and_evidence(tmp_path: Path):
    fill(SqliteStore(tmp_path / "catalogue.sqlite", top_k=0)).close()
    proc = tvindex("search", "object:person ~object:car", "--min-score", "0.7", "--sort",
                   "air_date:asc", "--json", "--data-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert [h["id"] for h in body["hits"]] == ["e1@0", "e1@2", "e3@1"] and body["total"] == 3
    assert body["hits"][0]["evidence"][1] == {
        "label_set": "coco80", "label": "car", "score": 0.0, "coverage": None,
        "excluded": True, "term": "object:car", "soft": True}
    proc = tvindex("search", "object:person", "--level", "episode", "--limit", "1",
                   "--data-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "object:person 0.65" in proc.stdout and "best shot e1@0 [0.00-5.00 s]" in proc.stdout
    for bad, needle in ((["--min-score", "2"], "must be between 0 and 1"),
                        (["--sort", "colour"], "sort must be one of")):
        proc = tvindex("search", "object:person", *bad, "--data-dir", str(tmp_path))
        assert proc.returncode == 2 and needle in proc.stderr


@pytest.fixture()
def api(tmp_path: Path):
    s = fill(SqliteStore(tmp_path / "catalogue.sqlite", top_k=0))
    client = create_app(web_settings(tmp_path), s).test_client()
    yield client, ApiSchemas(client.get("/api/v1/openapi.json").get_json())
    s.close()


def test_api_min_score_sort_and_cursor(api):
    client, schemas = api
    body = get_ok(client, schemas, "/api/v1/search?q=object:person&min_score=0.75",
                  "SearchPage")
    assert [h["id"] for h in body["hits"]] == ["e3@1", "e1@0", "e1@2"] and body["total"] == 3
    body = get_ok(client, schemas, "/api/v1/search?q=object:person&level=episode"
                  "&sort=duration:asc", "SearchPage")
    assert [h["id"] for h in body["hits"]] == ["e2", "e1", "e3"]
    assert body["hits"][0]["best_shot"]["id"] == "e2@0"
    # pages cut from a cursor snapshot get their best shots too
    body = get_ok(client, schemas, "/api/v1/search?q=object:person&level=episode&limit=1",
                  "SearchPage")
    assert body["hits"][0]["best_shot"]["id"] == "e1@0" and body["next_cursor"]
    body = get_ok(client, schemas, f"/api/v1/search?cursor={body['next_cursor']}",
                  "SearchPage")
    assert body["hits"][0]["id"] == "e3" and body["hits"][0]["best_shot"]["id"] == "e3@1"
    # a cursor walk keeps the order and the floor of its first page
    url = "/api/v1/search?q=object:person&sort=air_date:asc&min_score=0.6&limit=2"
    seen, body = [], get_ok(client, schemas, url, "SearchPage")
    while True:
        seen += [h["id"] for h in body["hits"]]
        if not body["next_cursor"]:
            break
        body = get_ok(client, schemas, f"/api/v1/search?cursor={body['next_cursor']}",
                      "SearchPage")
    assert seen == ["e2@0", "e1@0", "e1@2", "e1@3", "e3@1"]
    for url, needle in (("/api/v1/search?q=dog&min_score=x", "min_score must be a number"),
                        ("/api/v1/search?q=dog&min_score=1.5", "between 0 and 1"),
                        ("/api/v1/search?q=dog&sort=title", "sort must be one of")):
        assert needle in get_error(client, schemas, url, 400)


def test_search_page_has_the_floor_and_the_order(api):
    client, _ = api
    html = client.get("/?q=object:person ~object:car&min_score=0.5&sort=air_date:asc"
                      ).get_data(as_text=True)
    assert 'name="min_score"' in html and 'value="0.5"' in html
    assert '<option value="air_date:asc" selected>' in html
    assert html.index('data-hit-id="e1@0"') < html.index('data-hit-id="e3@1"')
    assert '<span class="chip-sign">less</span> car' in html
    assert "4</strong> shots match" in html


def test_resolve_keeps_each_terms_text(tmp_path: Path):
    s = fill(SqliteStore(tmp_path / "c.sqlite", top_k=0))
    q = resolve(s, "person OR object:dog -car ~coco80:bicycle")
    assert q.group_terms == ("person OR object:dog",)
    assert q.excluded_terms == ("car",) and q.soft_terms == ("coco80:bicycle",)
    s.close()
