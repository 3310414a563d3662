"""Cursor paging of search (issue 16), on a real SqliteStore catalogue: following ``next_cursor``
lists exactly the hits of one big page; while episodes are written and re-written between the
page fetches (through a second store on the same file), every hit of the first page's ranking
still appears exactly once; damaged, forged or mismatched cursors are a 400, an expired one a
410; the CLI's ``--cursor``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_webui_catalogue import ApiSchemas, web_settings

from search.backends.sqlite.store import SqliteStore
from search.cursor import SnapshotCache
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from webui import create_app

REPO = Path(__file__).resolve().parents[1]
OBJ = LabelSet("coco80", "sigmoid", ("person", "dog", "car", "bicycle"))
N_EPISODES = 24
N_SEGMENTS = 3
PAGE = {"shot": 7, "episode": 5, "programme": 1}


def write_episode(store: SqliteStore, eid: str, rng: np.random.Generator,
                  n_segments: int = N_SEGMENTS) -> None:
    """Tags with dogs in every segment, at random strengths (so rewrites move the ranking)."""
    def frames(n: int) -> np.ndarray:
        x = rng.random((n, 4)).astype(np.float32) * 0.4
        x[:, 1] = rng.uniform(0.55, 1.0)  # dog
        return x

    segments = [SegmentTags(j, j * 5.0, j * 5.0 + 5, j * 5.0 + 2.5,
                            {"coco80": aggregate(frames(3), 0.5)}, thumbnail=rng.bytes(64))
                for j in range(n_segments)]
    store.write_episode(EpisodeTags(eid, f"fp-{eid}-{rng.integers(1 << 30)}", "v1",
                                    n_segments * 5.0, segments,
                                    {"coco80": aggregate(frames(3 * n_segments), 0.5)},
                                    "shots"))


def add_episode(store: SqliteStore, eid: str, pid: str, rng: np.random.Generator) -> None:
    store.upsert_catalogue([ProgrammeRecord(pid, f"Programme {pid}")],
                           [EpisodeRecord(eid, pid, f"Episode {eid}", f"/media/{eid}.mp4")])
    write_episode(store, eid, rng)


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    with SqliteStore(tmp_path / "catalogue.sqlite") as store:
        store.upsert_catalogue(
            [ProgrammeRecord(f"p{i}", f"Programme {i}") for i in range(4)],
            [EpisodeRecord(f"e{i:03d}", f"p{i % 4}", f"Episode {i}", f"/media/e{i}.mp4")
             for i in range(N_EPISODES)])
        store.register_label_sets([OBJ])
        for i in range(N_EPISODES):
            write_episode(store, f"e{i:03d}", rng)
    return tmp_path


@pytest.fixture()
def app(data_dir: Path) -> Flask:
    return create_app(web_settings(data_dir), SqliteStore(data_dir / "catalogue.sqlite"))


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def schemas(client: FlaskClient) -> ApiSchemas:
    return ApiSchemas(client.get("/api/v1/openapi.json").get_json())


def get_page(client: FlaskClient, schemas: ApiSchemas, url: str, **args: object) -> dict:
    resp = client.get(url, query_string=args or None)
    assert resp.status_code == 200, (url, args, resp.get_data(as_text=True))
    body = resp.get_json()
    schemas.validate(body, "SearchPage")
    return body


def error_status(client: FlaskClient, schemas: ApiSchemas, status: int, **args: object) -> str:
    resp = client.get("/api/v1/search", query_string=args)
    assert resp.status_code == status, (args, resp.get_data(as_text=True))
    body = resp.get_json()
    schemas.validate(body, "Error")
    return json.dumps(body)


def walk(client: FlaskClient, schemas: ApiSchemas, level: str, between=None) -> list[list[str]]:
    """The pages' ids, following ``next_cursor`` (and checking ``next``, its URL)."""
    body = get_page(client, schemas, "/api/v1/search", q="object:dog", level=level,
                    limit=PAGE[level])
    pages = [[h["id"] for h in body["hits"]]]
    while body["next_cursor"]:
        if between:
            between(len(pages))
        if len(pages) % 2:  # the cursor alone (q, level and limit left out)
            body = get_page(client, schemas, "/api/v1/search", cursor=body["next_cursor"])
        else:  # the next URL: it carries the cursor
            assert "cursor=" in body["next"] and "offset=" not in body["next"]
            body = get_page(client, schemas, body["next"])
        assert body["level"] == level and body["limit"] == PAGE[level]
        assert body["offset"] == PAGE[level] * len(pages)
        pages.append([h["id"] for h in body["hits"]])
    assert body["next"] is None and body["next_offset"] is None
    return pages


@pytest.mark.parametrize("level", ["shot", "episode", "programme"])
def test_cursor_pages_are_the_big_page(client, schemas, level):
    everything = get_page(client, schemas, "/api/v1/search", q="object:dog", level=level,
                          limit=500)
    assert everything["next_cursor"] is None and everything["total"] > PAGE[level]
    pages = walk(client, schemas, level)
    assert [i for p in pages for i in p] == [h["id"] for h in everything["hits"]]
    assert all(len(p) == PAGE[level] for p in pages[:-1]) and pages[-1]


@pytest.mark.parametrize("level", ["shot", "episode", "programme"])
def test_every_hit_once_while_the_catalogue_is_written(client, schemas, data_dir, level):
    original = [h["id"] for h in get_page(client, schemas, "/api/v1/search", q="object:dog",
                                          level=level, limit=500)["hits"]]
    rng = np.random.default_rng(1)
    writer = SqliteStore(data_dir / "catalogue.sqlite")

    def between(n: int) -> None:  # an index run: new episodes and programmes, rewrites
        add_episode(writer, f"new{n}", f"pnew{n}", rng)
        for i in range(0, N_EPISODES, 3):
            write_episode(writer, f"e{(i + n) % N_EPISODES:03d}", rng,
                          n_segments=1 + (i + n) % 4)

    try:
        pages = walk(client, schemas, level, between)
    finally:
        writer.close()
    seen = [i for p in pages for i in p]
    assert len(seen) == len(set(seen))
    assert seen == original
    after = [h["id"] for h in get_page(client, schemas, "/api/v1/search", q="object:dog",
                                       level=level, limit=500)["hits"]]
    assert after != original  # the writes did change the ranking


def test_offset_pages_have_no_cursor_and_keep_their_next_url(client, schemas):
    body = get_page(client, schemas, "/api/v1/search", q="object:dog", limit=5, offset=5)
    assert body["next_cursor"] is None and "offset=10" in body["next"]
    first = get_page(client, schemas, "/api/v1/search", q="object:dog", limit=5)
    assert first["next_cursor"] and "offset=5" in first["next"] and first["next_offset"] == 5


def test_bad_cursors(client, schemas):
    first = get_page(client, schemas, "/api/v1/search", q="object:dog", limit=5)
    cursor = first["next_cursor"]
    body, mac = cursor.split(".")
    forged = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    for bad in (forged, cursor[:-3], "nonsense", cursor + "x", "a.b"):
        assert "cursor" in error_status(client, schemas, 400, q="object:dog", cursor=bad)
    assert "offset" in error_status(client, schemas, 400, q="object:dog", cursor=cursor,
                                    offset=5)
    assert "another q" in error_status(client, schemas, 400, q="object:car", cursor=cursor)
    assert "another level" in error_status(client, schemas, 400, q="object:dog",
                                           level="episode", cursor=cursor)
    assert "another limit" in error_status(client, schemas, 400, q="object:dog", limit=6,
                                           cursor=cursor)
    # the same q, level and limit as the cursor's are fine
    get_page(client, schemas, "/api/v1/search", q="object:dog", level="shot", limit=5,
             cursor=cursor)


def test_a_lost_snapshot_is_recomputed_until_the_catalogue_changes(app, client, schemas,
                                                                   data_dir):
    first = get_page(client, schemas, "/api/v1/search", q="object:dog", limit=5)
    second = get_page(client, schemas, "/api/v1/search", q="object:dog",
                      cursor=first["next_cursor"])
    app.extensions["tvindex_cursors"].snapshots = SnapshotCache()  # as after an eviction
    again = get_page(client, schemas, "/api/v1/search", q="object:dog",
                     cursor=first["next_cursor"])
    assert again["hits"] == second["hits"] and again["offset"] == 5
    assert again["next_cursor"]
    with SqliteStore(data_dir / "catalogue.sqlite") as writer:
        write_episode(writer, "e000", np.random.default_rng(7))
    app.extensions["tvindex_cursors"].snapshots = SnapshotCache()
    text = error_status(client, schemas, 410, q="object:dog", cursor=first["next_cursor"])
    assert "expired" in text and "start again" in text


def test_snapshot_cache_bounds():
    from search.cursor import Snapshot
    from tvindex.core.records import Hit

    now = [0.0]
    cache = SnapshotCache(entries=2, ttl_s=10, max_hits=5, clock=lambda: now[0])

    def snap(sid: str, n: int) -> Snapshot:
        return Snapshot(sid, "q", "shot", sid, [Hit("shot", f"{sid}@{i}", 1.0, "p", "P")
                                               for i in range(n)], n, {}, now[0])

    cache.put(snap("a", 2))
    cache.put(snap("b", 2))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put(snap("c", 2))
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    cache.put(snap("d", 4))  # over the hits budget: the least recently used go
    assert len(cache) == 1 and cache.get("d")
    now[0] = 11.0
    assert cache.get("d") is None


def tvindex(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120, check=False)


def test_cli_cursor(data_dir):
    d = ["--data-dir", str(data_dir)]
    everything = json.loads(tvindex("search", "object:dog", "--limit", "500", "--json",
                                    *d).stdout)
    assert everything["next_cursor"] is None
    page = json.loads(tvindex("search", "object:dog", "--limit", "30", "--json", *d).stdout)
    seen = [h["id"] for h in page["hits"]]
    while page["next_cursor"]:
        proc = tvindex("search", "object:dog", "--limit", "30", "--cursor",
                       page["next_cursor"], "--json", *d)
        assert proc.returncode == 0, proc.stderr
        page = json.loads(proc.stdout)
        seen += [h["id"] for h in page["hits"]]
    assert seen == [h["id"] for h in everything["hits"]]
    text = tvindex("search", "object:dog", "--limit", "30", *d).stdout
    cursor = text.splitlines()[-1].removeprefix("next page: --cursor ")
    assert cursor != text.splitlines()[-1]
    proc = tvindex("search", "object:dog", "--limit", "30", "--cursor", cursor, *d)
    assert proc.returncode == 0 and proc.stdout.startswith(
        f"{everything['total']} shot(s) match; showing 31-60"), proc.stdout
    # mismatches, damage, offset with a cursor, and a changed catalogue
    for args in (("--limit", "20", "--cursor", cursor), ("--cursor", cursor[:-2]),
                 ("--limit", "30", "--offset", "5", "--cursor", cursor)):
        proc = tvindex("search", "object:dog", *args, *d)
        assert proc.returncode == 2, proc.stdout
        assert proc.stderr.startswith("tvindex: error:") and "cursor" in proc.stderr
    with SqliteStore(data_dir / "catalogue.sqlite") as writer:
        write_episode(writer, "e001", np.random.default_rng(3))
    proc = tvindex("search", "object:dog", "--limit", "30", "--cursor", cursor, "--json", *d)
    err = json.loads(proc.stderr)["error"]
    assert proc.returncode == 2 and err["code"] == "input" and "expired" in err["message"]
