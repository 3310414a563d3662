"""`tvindex serve` over the real demo catalogue (indexed once per session with the CLI): the
API answers the README's queries, real responses match the OpenAPI document, the real media
seeks with range requests, and waitress bounds request bodies."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from test_webui_catalogue import API_KEY, ApiSchemas, demo_env, index_demo, run_serve

pytestmark = pytest.mark.media


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    return index_demo(tmp_path_factory, shared_dir)


@pytest.fixture(scope="module")
def base(demo_dir: Path, shared_dir: Path) -> Iterator[str]:
    env = demo_env(shared_dir, TVINDEX__SERVER__API_KEY=API_KEY)
    with run_serve(demo_dir, env, "--threads", "4") as url:
        yield url


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture(scope="module")
def schemas(base: str) -> ApiSchemas:
    return ApiSchemas(get(base + "/api/v1/openapi.json")[1])


def test_bicycle_shot_from_bikes_mp4_via_the_api(base, schemas):
    status, body = get(base + "/api/v1/search?q=" + quote("object:bicycle") + "&limit=3")
    assert status == 200
    schemas.validate(body, "SearchPage")
    assert body["hits"][0]["episode_id"] in ("bici-01", "bici-02")
    shot = body["hits"][0]
    status, detail = get(base + shot["links"]["self"])
    schemas.validate(detail, "Shot")
    assert detail["start_s"] == shot["start_s"] and detail["programme_id"] == "ciutat-en-bici"


def test_real_responses_match_the_document(base, schemas):
    for path, schema in [
        ("/api/v1/health", "Health"),
        ("/api/v1/labels?set=coco80&limit=500", "LabelPage"),
        ("/api/v1/programmes", "ProgrammePage"),
        ("/api/v1/programmes/la-placa", "Programme"),
        ("/api/v1/programmes/la-placa/similar", "Similar"),
        ("/api/v1/episodes/placa-02", "Episode"),
        ("/api/v1/episodes/placa-02/timeline", "Timeline"),
        ("/api/v1/shots/conill-01@0", "Shot"),
        ("/api/v1/suggest?q=traff", "Suggestions"),
        ("/api/v1/search?q=" + quote("object:person -object:car") + "&level=programme",
         "SearchPage"),
        ("/api/v1/search?q=" + quote("imagenet1k:cab OR object:car after:2021-01-01") + "&level=episode",
         "SearchPage"),
    ]:
        status, body = get(base + path)
        assert status == 200, (path, body)
        schemas.validate(body, schema)
    assert get(base + "/api/v1/health")[1]["episodes"]["indexed"] == 11
    top = get(base + "/api/v1/search?q=object:person&level=programme")[1]["hits"][0]
    assert top["id"] == "la-placa"  # the README's second demo query


def test_timeline_of_a_range_episode_is_in_file_time(base):
    body = get(base + "/api/v1/episodes/bici-02/timeline")[1]
    assert body["start_s"] == pytest.approx(5.48) and body["end_s"] == pytest.approx(10.0)
    assert all(5.48 - 1e-6 <= s["start_s"] < 10.0 for s in body["segments"])


def test_real_media_seeks_with_ranges(base, shared_dir):
    data = (shared_dir / "media" / "video" / "bikes.mp4").read_bytes()
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("GET", "/media/bici-02", headers={"Range": "bytes=400000-"})
    resp = conn.getresponse()
    assert resp.status == 206 and resp.read() == data[400000:]
    assert resp.getheader("Content-Type") == "video/mp4"
    conn.close()


def test_server_bounds_request_bodies(base):
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/api/v1/episodes/bici-01/reindex", body=b"x" * 200_000,
                 headers={"X-API-Key": API_KEY, "Content-Type": "application/octet-stream"})
    assert conn.getresponse().status == 413
    conn.close()


def test_serve_reindex_with_the_configured_key(base, schemas):
    req = urllib.request.Request(base + "/api/v1/episodes/arbre-02/reindex", method="POST",
                                 headers={"X-API-Key": API_KEY})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
        schemas.validate(json.load(resp), "ReindexAccepted")
    assert get(base + "/api/v1/episodes/arbre-02")[1]["reindex_requested"] is True
