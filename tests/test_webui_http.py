"""HTTP conventions of the web server (issue 16): compression negotiated from
Accept-Encoding, ETag/Last-Modified tied to the catalogue's write version (304 on
If-None-Match, a new tag after a write), Cache-Control per route, the CORS allow-list and the
per-client rate limit with Retry-After.

Over raw HTTP against a real ``tvindex serve --port 0`` on 127.0.0.1 (a subprocess over a
hand-built catalogue); the Flask test client where raw HTTP adds nothing."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import servers
from test_webui_catalogue import _seg, _tags, build_catalogue, web_settings

from search.backends.sqlite.store import SqliteStore
from tvindex.settings import ConfigError, load_settings
from webui import create_app
from webui.app import SECURITY_HEADERS
from webui.http_cache import IMMUTABLE
from webui.rate_limit import RateLimited, RateLimiter

ORIGIN = "http://app.example.org"


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = build_catalogue(tmp_path)
    yield store
    store.close()


@pytest.fixture()
def serve(tmp_path: Path, store: SqliteStore) -> Iterator:
    yield from servers(tmp_path)


def get(port: int, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request over a fresh connection: status, headers (lower-case names), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        # skip_accept_encoding: http.client adds "Accept-Encoding: identity" otherwise.
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def vary(headers: dict[str, str]) -> set[str]:
    return {v.strip().lower() for v in headers.get("vary", "").split(",") if v.strip()}


# --- compression ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/labels", "/api/v1/search?q=dog&level=shot",
                                  "/api/v1/openapi.json"])
def test_gzip_negotiated_smaller_and_the_same_json(serve, path):
    port = serve()
    status, plain_headers, plain = get(port, path)
    assert status == 200 and "content-encoding" not in plain_headers
    status, headers, body = get(port, path, {"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert "accept-encoding" in vary(headers) and "accept-encoding" in vary(plain_headers)
    assert int(headers["content-length"]) == len(body) < len(plain)
    assert json.loads(gzip.decompress(body)) == json.loads(plain)
    # Each encoding is its own representation: its own strong tag.
    assert headers["etag"] == plain_headers["etag"][:-1] + ':gzip"'


def test_brotli_when_preferred(serve):
    brotli = pytest.importorskip("brotli")
    port = serve()
    _, _, plain = get(port, "/api/v1/labels")
    status, headers, body = get(port, "/api/v1/labels", {"Accept-Encoding": "gzip;q=0.5, br"})
    assert status == 200 and headers["content-encoding"] == "br"
    assert json.loads(brotli.decompress(body)) == json.loads(plain)


def test_small_bodies_errors_and_media_are_not_compressed(serve, tmp_path):
    port = serve()
    accept = {"Accept-Encoding": "gzip"}
    status, headers, _ = get(port, "/api/v1/suggest?q=zzzz", accept)  # a tiny body
    assert status == 200 and "content-encoding" not in headers
    status, headers, _ = get(port, "/api/v1/nope", accept)
    assert status == 404 and "content-encoding" not in headers
    media = (tmp_path / "media" / "a.mp4").read_bytes()
    status, headers, body = get(port, "/media/bd1", {**accept, "Range": "bytes=100-1099"})
    assert status == 206 and "content-encoding" not in headers
    assert body == media[100:1100] and headers["content-range"] == f"bytes 100-1099/{len(media)}"
    status, headers, body = get(port, "/media/bd1", accept)
    assert status == 200 and "content-encoding" not in headers and body == media
    # The media's own validator still works beside the catalogue's.
    assert get(port, "/media/bd1", {"If-None-Match": headers["etag"]})[0] == 304


# --- validators -----------------------------------------------------------------------------


def test_etag_304_and_a_new_etag_after_a_write(serve, store):
    port = serve()
    path = "/api/v1/search?q=dog&level=episode"
    status, headers, body = get(port, path)
    assert status == 200 and body
    etag, modified = headers["etag"], headers["last-modified"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert headers["cache-control"] == "no-cache"
    for name, value in SECURITY_HEADERS.items():
        assert headers[name.lower()] == value

    status, headers, body = get(port, path, {"If-None-Match": etag})
    assert status == 304 and body == b"" and headers["etag"] == etag
    assert headers["cache-control"] == "no-cache"
    # Weak comparison, a list, and the compressed representation's tag.
    assert get(port, path, {"If-None-Match": f'"other", W/{etag}'})[0] == 304
    gz = get(port, path, {"Accept-Encoding": "gzip"})[1]["etag"]
    status, headers, _ = get(port, path, {"If-None-Match": gz, "Accept-Encoding": "gzip"})
    assert status == 304 and headers["etag"] == gz
    assert get(port, path, {"If-Modified-Since": modified})[0] == 304
    # Another URL (another query) is another answer.
    other = get(port, "/api/v1/search?q=dog&level=shot")[1]["etag"]
    assert other != etag

    time.sleep(1.1)  # the new version's Last-Modified is a later second
    # A write through the store (what an index run does): every tag changes.
    store.write_episode(_tags("bd2", [
        _seg(0, [[0.9, 0.95, 0.0, 0.0, 0.0]], [[0.9, 0.05, 0.0, 0.05]], 0.0)], 5.0))
    status, headers, body = get(port, path, {"If-None-Match": etag})
    assert status == 200 and body and headers["etag"] != etag
    assert headers["last-modified"] != modified
    assert get(port, path, {"If-Modified-Since": modified})[0] == 200
    assert get(port, path, {"If-None-Match": headers["etag"]})[0] == 304


def test_cache_control_per_route(tmp_path, store):
    app = create_app(web_settings(tmp_path, api_key="k" * 16), store)
    client = app.test_client()
    assert client.get("/api/v1/programmes").headers["Cache-Control"] == "no-cache"
    # No validator, but revalidated too (they read the vector indexes as well).
    resp = client.get("/api/v1/episodes/bd1/similar")
    assert resp.headers["Cache-Control"] == "no-cache" and "ETag" not in resp.headers
    for resp in (client.get("/api/v1/health"), client.get("/api/v1/nope"),
                 client.get("/api/v1/search?q=dog&limit=0"),
                 client.post("/api/v1/episodes/bd1/reindex", headers={"X-API-Key": "k" * 16})):
        assert resp.headers["Cache-Control"] == "no-store", resp.request.path
        assert "ETag" not in resp.headers

    # Thumbnails: an hour, then revalidated by a strong tag of the picture's bytes.
    resp = client.get("/thumbnails/bd1/0.jpg")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "public, max-age=3600"
    etag = resp.headers["ETag"]
    assert not etag.startswith("W/")
    again = client.get("/thumbnails/bd1/0.jpg", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert client.get("/thumbnails/bd1/1.jpg").headers["ETag"] != etag

    # Static files: the pages link them with their content hash, cached for a year.
    page = client.get("/").get_data(as_text=True)
    css = re.search(r'href="(/static/app\.css\?v=[0-9a-f]+)"', page)
    assert css, page
    resp = client.get(css.group(1))
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == IMMUTABLE
    resp = client.get("/static/app.css?v=0000")  # not this file's hash: the short default
    assert resp.status_code == 200 and resp.headers["Cache-Control"] != IMMUTABLE


# --- CORS -----------------------------------------------------------------------------------


def test_cors_only_for_configured_origins(serve):
    port = serve(cors_origins=json.dumps([ORIGIN]))
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type, x-api-key"}
    status, headers, body = get(port, "/api/v1/similar", preflight, method="OPTIONS")
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == ORIGIN
    assert set(headers["access-control-allow-methods"].split(", ")) >= {"GET", "POST"}
    assert {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")} \
        == {"content-type", "x-api-key"}
    assert "origin" in vary(headers)

    status, headers, _ = get(port, "/api/v1/labels", {"Origin": ORIGIN})
    assert status == 200 and headers["access-control-allow-origin"] == ORIGIN
    assert "origin" in vary(headers) and "etag" in headers["access-control-expose-headers"].lower()
    status, headers, _ = get(port, "/api/v1/nope", {"Origin": ORIGIN})  # errors too
    assert status == 404 and headers["access-control-allow-origin"] == ORIGIN

    evil = "http://evil.example.org"
    status, headers, body = get(port, "/api/v1/similar", {**preflight, "Origin": evil},
                                method="OPTIONS")
    assert status == 403 and json.loads(body)["error"]["status"] == 403
    assert json.loads(body)["code"] == "forbidden"
    assert headers["content-type"].startswith("application/problem+json")
    assert not [h for h in headers if h.startswith("access-control-")]
    status, headers, _ = get(port, "/api/v1/labels", {"Origin": evil})
    assert status == 200 and not [h for h in headers if h.startswith("access-control-")]
    # An allowed origin asking for a method or header the API does not take.
    status, headers, _ = get(port, "/api/v1/similar", {
        **preflight, "Access-Control-Request-Method": "DELETE"}, method="OPTIONS")
    assert status == 403 and "access-control-allow-origin" not in headers
    status, _, _ = get(port, "/api/v1/similar", {
        **preflight, "Access-Control-Request-Headers": "authorization"}, method="OPTIONS")
    assert status == 403


def test_no_cors_headers_by_default(tmp_path, store):
    client = create_app(web_settings(tmp_path), store).test_client()
    resp = client.get("/api/v1/labels", headers={"Origin": ORIGIN})
    assert not [k for k, _ in resp.headers.items() if k.lower().startswith("access-control-")]
    assert "Origin" not in resp.headers.get("Vary", "")
    resp = client.options("/api/v1/similar", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_cors_origins_are_checked(tmp_path):
    for bad in ("*", "app.example.org", "https://app.example.org/path", "ftp://x"):
        with pytest.raises(ConfigError, match="cors_origins"):
            load_settings(None, {"paths.data_dir": str(tmp_path),
                                 "server.cors_origins": [bad]}, environ={})


# --- rate limit -----------------------------------------------------------------------------


def test_rate_limit_429_with_retry_after_then_allowed_again(serve):
    # 60 a minute (one token a second), at most 5 at once.
    port = serve(rate_limit_per_minute="60", rate_limit_burst="5")
    statuses = [get(port, "/api/v1/labels")[0] for _ in range(5)]
    assert statuses == [200] * 5
    status, headers, body = get(port, "/api/v1/labels")
    assert status == 429
    retry = int(headers["retry-after"])
    assert 1 <= retry <= 2
    error = json.loads(body)["error"]
    assert error["status"] == 429 and "rate_limit_per_minute" in error["message"]
    problem = json.loads(body)
    assert problem["status"] == 429 and problem["code"] == "rate_limited"
    assert problem["retry_after"] == retry and "rate_limit_per_minute" in problem["detail"]
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["cache-control"] == "no-store"
    assert get(port, "/")[0] == 429  # every route counts
    time.sleep(retry)
    assert get(port, "/api/v1/labels")[0] == 200


def test_rate_limiter_buckets():
    limiter = RateLimiter(per_minute=120, burst=2, max_clients=3)
    limiter.take("a", now=0.0)
    limiter.take("a", now=0.0)
    with pytest.raises(RateLimited) as exc:
        limiter.take("a", now=0.1)
    assert exc.value.retry_after_s == 1  # 2 tokens a second: back in 0.4 s, said as 1 s
    limiter.take("b", now=0.1)  # another address has its own bucket
    limiter.take("a", now=0.6)
    # Many addresses: refilled buckets are forgotten, at most max_clients kept.
    for i in range(10):
        limiter.take(f"c{i}", now=10.0 + i)
    assert len(limiter._buckets) <= 3
    assert not RateLimiter(per_minute=0).enabled
    RateLimiter(per_minute=0).take("a")  # off: never limited
