"""Security of the web layer: media only by catalogue id (no path from the client), catalogue
strings escaped in HTML, bounded requests, the API key, headers, no debug and no tracebacks.
Path tricks go to a real waitress server over raw HTTP, as a client would send them."""

from __future__ import annotations

import http.client
import re
from pathlib import Path

import pytest
from flask import Flask
from test_webui_catalogue import (
    XSS_DESCRIPTION,
    XSS_TITLE,
    serve_in_thread,
    web_settings,
)

from webui import create_app

WEBUI = Path(__file__).resolve().parent.parent / "webui"
ESCAPED_TITLE = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture()
def server(app: Flask):
    with serve_in_thread(app) as url:
        yield url.rsplit(":", 1)[1]


def raw_get(port: str, path: str, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as written (no client-side normalisation or quoting)."""
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


# --- media and thumbnails only by catalogue id ----------------------------------------------

TRAVERSALS = [
    "/media/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/media/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/media/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/media/../../../../etc/passwd",
    "/media/%2Fetc%2Fpasswd",
    "/media//etc/passwd",
    "/media/bd1%2f..%2f..%2f..%2fetc%2fpasswd",
    "/media/..",
    "/media/C:%5Cwindows%5Cwin.ini",
    "/thumbnails/..%2f..%2fetc%2fpasswd/0.jpg",
    "/thumbnails/%2Fetc%2Fpasswd/0.jpg",
    "/posters/episodes/..%2f..%2fetc%2fpasswd.jpg",
    "/static/..%2f..%2fwebui%2fapp.py",
    "/static/%2Fetc%2Fpasswd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_tricks_on_media_urls_are_404(server, path):
    status, _, body = raw_get(server, path)
    assert status == 404, (path, status)
    assert b"root:" not in body and b"create_app" not in body


def test_absolute_path_of_a_registered_file_is_not_an_id(server, store, tmp_path):
    registered = store.episode("bd1").media_path
    assert Path(registered).is_file()
    status, _, _ = raw_get(server, "/media/" + registered.replace("/", "%2F"))
    assert status == 404
    assert raw_get(server, "/media" + registered)[0] == 404


def test_media_supports_range_requests(server, store):
    data = Path(store.episode("bd1").media_path).read_bytes()
    status, headers, body = raw_get(server, "/media/bd1", {"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert headers["accept-ranges"] == "bytes" and headers["content-type"] == "video/mp4"
    status, _, body = raw_get(server, "/media/bd1", {"Range": f"bytes={len(data) - 10}-"})
    assert status == 206 and body == data[-10:]
    status, headers, body = raw_get(server, "/media/bd1")
    assert status == 200 and body == data
    assert raw_get(server, "/media/bd1", {"If-None-Match": headers["etag"]})[0] == 304


def test_missing_media_file_is_404(client, store):
    Path(store.episode("bd2").media_path).unlink()
    resp = client.get("/media/bd2")
    assert resp.status_code == 404
    assert "media file of episode &#39;bd2&#39; is not available" in resp.get_data(as_text=True)


def test_thumbnails_only_for_catalogue_shots(client):
    assert client.get("/thumbnails/bd1/0.jpg").mimetype == "image/jpeg"
    assert client.get("/thumbnails/bd1/9.jpg").status_code == 404
    assert client.get("/thumbnails/nope/0.jpg").status_code == 404
    assert client.get("/posters/episodes/nope.jpg").status_code == 404
    # No thumbnail at all (pending episode): a placeholder image, not an error.
    resp = client.get("/posters/programmes/kitchen.jpg")
    assert resp.status_code == 200 and resp.mimetype == "image/svg+xml"


# --- catalogue strings are text, never markup -----------------------------------------------

@pytest.mark.parametrize("url", [
    "/", "/?q=object:car", "/?q=object:car&level=episode", "/?q=object:car&level=programme",
    "/programmes", "/programmes/city", "/episodes/c1", "/episodes/c1?shot=1",
    "/?q=programme:city", "/programmes/beach-dogs", "/similar?shot=c1@0",
])
def test_hostile_titles_render_as_text(client, url):
    html = client.get(url).get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert ESCAPED_TITLE in html
    if url == "/programmes/city":
        assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt; &amp; friends" in html


def test_hostile_query_text_is_escaped_where_reflected(client):
    resp = client.get("/?q=%3Cscript%3Ealert(3)%3C/script%3E")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert "<script>alert(3)" not in html and "&lt;script&gt;alert(3)&lt;/script&gt;" in html


def test_json_carries_titles_as_data_not_html(client):
    resp = client.get("/api/v1/programmes/city")
    assert resp.mimetype == "application/json"
    assert resp.get_json()["title"] == f"{XSS_TITLE} City"
    assert resp.get_json()["description"] == XSS_DESCRIPTION
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_templates_never_mark_data_safe():
    for path in [*WEBUI.rglob("*.html"), *WEBUI.rglob("*.py")]:
        text = path.read_text()
        assert "|safe" not in text.replace(" ", ""), path
        assert "Markup(" not in text and "autoescape false" not in text, path


@pytest.mark.parametrize("url", ["/", "/?q=object:dog", "/programmes/beach-dogs",
                                 "/episodes/bd1?shot=1", "/labels", "/programmes",
                                 "/similar", "/similar?shot=bd1@0", "/nope"])
def test_pages_work_under_a_strict_csp(client, url):
    """No inline script, inline handler or style attribute: the CSP forbids them all."""
    resp = client.get(url)
    html = resp.get_data(as_text=True)
    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert scripts and all("src=" in attrs for attrs in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html)
    assert not re.search(r"\sstyle\s*=", html)
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp


@pytest.mark.parametrize("url", ["/", "/api/v1/health", "/media/bd1", "/thumbnails/bd1/0.jpg",
                                 "/static/app.css", "/api/v1/nope", "/nope"])
def test_security_headers_everywhere(client, url):
    headers = client.get(url).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in headers["Content-Security-Policy"]


# --- bounded requests, keys, debug -------------------------------------------------------------

def test_query_length_is_bounded(client):
    at_limit = "object:dog".ljust(500)
    assert client.get("/api/v1/search", query_string={"q": at_limit}).status_code == 200
    over = at_limit + "x"
    for url in ("/api/v1/search", "/"):
        resp = client.get(url, query_string={"q": over})
        assert resp.status_code == 400
        assert "too long: 501 characters (limit 500)" in resp.get_data(as_text=True)


def test_configured_query_limit_applies(tmp_path, store):
    client = create_app(web_settings(tmp_path, max_query_length=20), store).test_client()
    assert client.get("/api/v1/search?q=object:dog").status_code == 200
    assert client.get("/api/v1/search?q=object:dog%20scene:beach").status_code == 400


def test_state_changing_endpoint_without_key_is_401(server, client):
    conn = http.client.HTTPConnection("127.0.0.1", int(server), timeout=10)
    conn.request("POST", "/api/v1/episodes/bd1/reindex")
    resp = conn.getresponse()
    assert resp.status == 401
    assert b"X-API-Key" in resp.read()
    assert client.get("/api/v1/episodes/bd1").get_json()["reindex_requested"] is False


def test_no_debug_and_no_traceback_on_errors(tmp_path, store):
    app = create_app(web_settings(tmp_path), store)
    assert app.debug is False and app.testing is False

    def boom():
        raise RuntimeError("secret internals /etc/shadow")

    app.add_url_rule("/boom", "boom", boom)
    app.add_url_rule("/api/v1/boom", "api_boom", boom)
    client = app.test_client()
    page = client.get("/boom")
    assert page.status_code == 500
    api = client.get("/api/v1/boom")
    assert api.status_code == 500 and api.get_json()["error"]["status"] == 500
    assert api.mimetype == "application/problem+json"
    assert api.get_json()["status"] == 500 and api.get_json()["code"] == "internal"
    for resp in (page, api):
        text = resp.get_data(as_text=True)
        assert "Traceback" not in text and "secret internals" not in text


def test_serve_never_enables_debug():
    source = (WEBUI.parent / "tvindex" / "commands" / "serve.py").read_text()
    assert "debug" not in source.replace("never in debug mode", "")
    assert "create_server" in source  # waitress, not the development server
