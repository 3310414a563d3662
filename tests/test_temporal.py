"""Temporal queries (issue 15, item 2): ``A then B [within W]`` at shot level, on SQLite and
Elasticsearch, through the engine, the CLI and the API (catalogue: tests/test_presence.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_presence import api, fill, store, tvindex  # noqa: F401  (fixtures)
from test_webui_api import get_error, get_ok

from search.backends.sqlite.store import SqliteStore
from search.engine import run_search
from search.query import QueryError, parse_query
from search.temporal import pairs
from tvindex.core.records import Hit


def moments(page) -> list[tuple[str, str]]:
    return [(h.id, h.then["id"]) for h in page.hits]


def test_then_is_the_next_shot_by_default(store):  # noqa: F811
    page = run_search(store, "object:car then object:person", "shot")
    # car then person in the very next shot: e3@0 -> e3@1 (a 7 s gap is still "next"),
    # e1@1 -> e1@2; e2@0 -> e2@1 has no person present, e3@2 is the last shot
    assert moments(page) == [("e3@0", "e3@1"), ("e1@1", "e1@2")] and page.total == 2
    first = page.hits[0]
    assert first.score == pytest.approx(math.sqrt(0.8 * 0.95), rel=1e-5)
    assert (first.start_s, first.end_s) == (0.0, 5.0)
    assert (first.then["start_s"], first.then["end_s"]) == (12.0, 17.0)
    assert first.then["score"] == pytest.approx(0.95)
    assert [e.term for e in first.evidence] == ["object:car"]
    assert [e["term"] for e in first.then["evidence"]] == ["object:person"]


def test_within_a_window(store):  # noqa: F811
    # B starts at most W seconds after A ends; the best B in the window is chosen
    page = run_search(store, "object:car then object:person within 5s", "shot")
    assert moments(page) == [("e1@1", "e1@2")]  # e3@1 starts 7 s after e3@0 ends
    page = run_search(store, "object:car then object:person within 10s", "shot")
    assert moments(page) == [("e3@0", "e3@1"), ("e1@1", "e1@2")]
    # e1@1 -> e1@2 (0.8) beats e1@3 (0.6), both within 10 s
    page = run_search(store, "object:car then object:dog OR object:person within 1m", "shot")
    assert ("e1@1", "e1@2") in moments(page)


def test_filters_floor_and_sort_apply_to_the_pairs(store):  # noqa: F811
    page = run_search(store, "object:car then object:person programme:city", "shot")
    assert moments(page) == [("e3@0", "e3@1")]
    page = run_search(store, "object:car then object:person", "shot", min_score=0.8)
    assert moments(page) == [("e3@0", "e3@1")] and page.total == 1
    page = run_search(store, "object:car then object:person", "shot", sort="air_date:asc")
    assert moments(page) == [("e1@1", "e1@2"), ("e3@0", "e3@1")]
    # exclusions hold for both moments: without car, e3@1 -> e3@2 goes (car in e3@2)
    page = run_search(store, "object:person then object:person", "shot")
    assert moments(page) == [("e3@1", "e3@2"), ("e1@2", "e1@3")]
    page = run_search(store, "object:person then object:person -object:car", "shot")
    assert moments(page) == [("e1@2", "e1@3")]
    with pytest.raises(QueryError, match="both required and excluded"):
        run_search(store, "object:car then object:person -object:person", "shot")


def test_then_at_episode_level_is_a_query_error(store):  # noqa: F811
    for level in ("episode", "programme"):
        with pytest.raises(QueryError, match="shot level only"):
            run_search(store, "object:car then object:person", level)


def test_parse_round_trips():
    for text in ("object:car then object:person", "a OR b then c within 30s -d ~e",
                 "x then y within 2.5s genre:news"):
        q = parse_query(text)
        assert parse_query(q.to_query()) == q and q.temporal
    q = parse_query("car then person within 2m")
    assert q.within_s == 120.0 and q.to_query() == "car then person within 120s"
    for bad, needle in (("then car", "needs a term before it"),
                        ("car then", "needs a term after it"),
                        ("car within 3s", "belongs after 'A then B'"),
                        ("car then person within", "needs a window"),
                        ("car then person within soon", "needs a window like 30s"),
                        ("car then person within 0s", "must be above 0"),
                        ("a then b then c", "a second 'then'")):
        with pytest.raises(QueryError, match=needle):
            parse_query(bad)
    # quoted, the keywords are words again
    assert parse_query('"then"').groups[0][0].value == "then"


def test_pairing_rule_directly():
    def hit(eid: str, i: int, t0: float, t1: float, score: float) -> Hit:
        return Hit("shot", f"{eid}@{i}", score, "p", "P", eid, start_s=t0, end_s=t1, time_s=t0)

    a = [hit("e", 0, 0, 5, 0.5), hit("e", 3, 15, 20, 0.9)]
    b = [hit("e", 0, 0, 5, 0.9), hit("e", 1, 5, 10, 0.4), hit("e", 2, 10, 15, 0.8),
         hit("f", 1, 5, 10, 1.0)]
    got = {h.id: h.then["id"] for h in pairs(a, b, None)}
    assert got == {"e@0": "e@1"}  # not itself, not another episode, the next shot only
    got = {h.id: h.then["id"] for h in pairs(a, b, 5.0)}
    assert got == {"e@0": "e@2"}  # the best within 5 s of A's end; nothing after e@3


def test_cli_and_api(tmp_path: Path, api):  # noqa: F811
    fill(SqliteStore(tmp_path / "catalogue.sqlite", top_k=0)).close()
    proc = tvindex("search", "object:car then object:person within 10s", "--data-dir",
                   str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "then e3@1 [12.00-17.00 s] 0.950" in proc.stdout
    proc = tvindex("search", "object:car then object:person", "--json", "--data-dir",
                   str(tmp_path))
    body = json.loads(proc.stdout)
    assert [(h["id"], h["then"]["id"]) for h in body["hits"]] == [("e3@0", "e3@1"),
                                                                   ("e1@1", "e1@2")]
    client, schemas = api
    body = get_ok(client, schemas, "/api/v1/search?q=object:car then object:person&limit=1",
                  "SearchPage")
    assert body["hits"][0]["then"]["id"] == "e3@1" and body["query"]["within_s"] is None
    nxt = get_ok(client, schemas, f"/api/v1/search?cursor={body['next_cursor']}",
                 "SearchPage")
    assert nxt["hits"][0]["id"] == "e1@1"
    assert "shot level only" in get_error(
        client, schemas, "/api/v1/search?q=object:car then object:person&level=episode", 400)
    html = client.get("/?q=object:car then object:person").get_data(as_text=True)
    assert '<p class="card-then">then <a href="/episodes/e3?shot=1">' in html
    html = client.get("/?q=object:person&level=episode").get_data(as_text=True)
    assert 'data-best-shot="e1@0"' in html
