"""Every error a client can provoke under /api is an RFC 9457 problem: application/problem+json
with type, title, status (the HTTP status), detail, code (one of the documented codes) and
instance, plus its structured members; validated against the served OpenAPI document. The
waitress-level answers (400/413/431) are checked over a raw socket against a real server."""

from __future__ import annotations

import io
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image
from serve_process import start_serve, stop_serve
from test_webui_catalogue import ApiSchemas, web_settings

from search.backends.sqlite.store import SqliteStore
from webui import create_app
from webui.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TITLES, PROBLEM_TYPE_BASE

REQUIRED = ("type", "title", "status", "detail", "code")


@pytest.fixture()
def schemas(client: FlaskClient) -> ApiSchemas:
    return ApiSchemas(client.get("/api/v1/openapi.json").get_json())


def check_problem(body: dict, status: int, code: str, instance: str | None) -> dict:
    for member in REQUIRED:
        assert member in body, (member, body)
    assert body["status"] == status and body["code"] == code, body
    assert body["code"] in PROBLEM_TITLES
    assert body["type"] == PROBLEM_TYPE_BASE + code
    assert body["title"] == PROBLEM_TITLES[code]
    assert isinstance(body["detail"], str) and body["detail"]
    if instance is not None:
        assert body["instance"] == instance
    # The deprecated shape, kept beside it for one release.
    assert body["error"]["status"] == status and body["error"]["message"] == body["detail"]
    return body


def problem_of(resp, schemas: ApiSchemas, status: int, code: str) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    assert resp.mimetype == PROBLEM_MEDIA_TYPE
    body = json.loads(resp.get_data(as_text=True))
    schemas.validate(body, "Error")
    return check_problem(body, status, code, resp.request.path)


def jpeg_noise(size=(300, 200)) -> bytes:
    img = Image.effect_noise(size, 100).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


# --- the document ----------------------------------------------------------------------------

def test_every_documented_error_is_problem_json(schemas: ApiSchemas):
    schema = schemas.document["components"]["schemas"]["Error"]
    assert set(schema["properties"]["code"]["enum"]) == set(PROBLEM_TITLES)
    assert set(REQUIRED) <= set(schema["required"])
    n = 0
    for ops in schemas.document["paths"].values():
        if "servers" in ops:  # media, thumbnails, posters: HTML error pages at the root
            continue
        for method, op in ops.items():
            if method == "servers":
                continue
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")) and "content" in resp:
                    assert list(resp["content"]) == [PROBLEM_MEDIA_TYPE], (method, status)
                    n += 1
    assert n > 10


# --- each code a client can provoke ----------------------------------------------------------

def test_query_syntax_has_its_column(client, schemas):
    body = problem_of(client.get("/api/v1/search?q=dog%20OR"), schemas, 400, "query_syntax")
    assert body["column"] == 5 and "dangling OR" in body["detail"]


def test_unknown_label_has_suggestions_and_column(client, schemas):
    body = problem_of(client.get("/api/v1/search?q=beach%20object:dgo"), schemas, 400,
                      "unknown_label")
    assert body["suggestions"] == ["dog"], body
    assert body["column"] == 14  # where "dgo" starts
    assert "did you mean" in body["detail"]


def test_unknown_label_set_and_programme_have_codes(client, schemas):
    body = problem_of(client.get("/api/v1/search?q=objet:dog"), schemas, 400, "unknown_label")
    assert "object" in body["suggestions"]
    body = problem_of(client.get('/api/v1/search?q=dog%20programme:"Beach%20Dgs"'), schemas, 400,
                      "unknown_programme")
    assert body["suggestions"] == ["Beach Dogs"]


def test_unknown_parameter_names_them(client, schemas):
    body = problem_of(client.get("/api/v1/programmes?size=2&zz=1"), schemas, 400,
                      "unknown_parameter")
    assert body["parameters"] == ["size", "zz"] and body["suggestions"] == ["limit"]


def test_bad_parameter(client, schemas):
    body = problem_of(client.get("/api/v1/programmes?limit=x"), schemas, 400, "bad_parameter")
    assert "limit must be an integer" in body["detail"]
    assert "column" not in body and "suggestions" not in body


def test_not_found_and_method_not_allowed(client, schemas):
    problem_of(client.get("/api/v1/nope"), schemas, 404, "not_found")
    problem_of(client.get("/api/v1/programmes/nope"), schemas, 404, "not_found")
    resp = client.put("/api/v1/similar")  # GET (a kept picture) and POST (an upload) only
    problem_of(resp, schemas, 405, "method_not_allowed")
    assert {"GET", "POST"} <= set(resp.headers["Allow"].replace(" ", "").split(","))


def test_api_key_errors(tmp_path, store, client, schemas):
    problem_of(client.post("/api/v1/episodes/bd1/reindex"), schemas, 401, "unauthorized")
    keyless = create_app(web_settings(tmp_path), store).test_client()
    problem_of(keyless.post("/api/v1/episodes/bd1/reindex"), schemas, 403, "forbidden")


def test_uploads_413_415_and_no_embeddings_409(tmp_path, store, schemas):
    client = create_app(web_settings(tmp_path, max_upload_bytes=4096), store).test_client()
    data = jpeg_noise()
    assert len(data) > 4096
    resp = client.post("/api/v1/similar", data={"image": (io.BytesIO(data), "a.jpg")},
                       content_type="multipart/form-data")
    assert "server.max_upload_bytes" in problem_of(resp, schemas, 413,
                                                   "payload_too_large")["detail"]
    resp = client.post("/api/v1/similar", data=b"hello", content_type="text/plain")
    problem_of(resp, schemas, 415, "unsupported_media_type")
    # This catalogue has no embeddings: the request is fine, the catalogue cannot answer.
    problem_of(client.get("/api/v1/shots/bd1@0/similar"), schemas, 409, "no_embeddings")


def test_rate_limited_has_retry_after(tmp_path, store, schemas):
    client = create_app(web_settings(tmp_path, rate_limit_per_minute=60, rate_limit_burst=1),
                        store).test_client()
    assert client.get("/api/v1/labels").status_code == 200
    resp = client.get("/api/v1/labels")
    body = problem_of(resp, schemas, 429, "rate_limited")
    assert body["retry_after"] == int(resp.headers["Retry-After"]) >= 1


def test_foreign_host(client, schemas):
    resp = client.get("/api/v1/labels", headers={"Host": "evil.example"})
    assert "server.allowed_hosts" in problem_of(resp, schemas, 400, "host_not_allowed")["detail"]


def test_internal_error(tmp_path, store, schemas):
    def boom():
        raise RuntimeError("secret internals")

    app = create_app(web_settings(tmp_path), store)
    app.add_url_rule("/api/v1/boom", "api_boom", boom)
    body = problem_of(app.test_client().get("/api/v1/boom"), schemas, 500, "internal")
    assert "secret" not in body["detail"]


def test_html_pages_keep_html_errors(client):
    resp = client.get("/nope")
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    resp = client.get("/?q=dog%20OR")
    assert resp.status_code == 400 and resp.mimetype == "text/html"


# --- waitress's own answers, over a raw socket -----------------------------------------------

@pytest.fixture()
def port(tmp_path: Path) -> Iterator[int]:
    SqliteStore(tmp_path / "catalogue.sqlite").close()
    proc: subprocess.Popen
    proc, port = start_serve(tmp_path)
    try:
        yield port
    finally:
        assert "Traceback" not in stop_serve(proc)


def raw(port: int, payload: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:  # the rest of an oversized request was left unread
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_waitress_answers_are_problems(port):
    cases = [
        (b"GARBAGE\r\n\r\n", 400, "bad_request", None),
        (b"GET /api/v1/labels HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 70_000
         + b"\r\n\r\n", 431, "headers_too_large", None),
        ((b"POST /api/v1/similar HTTP/1.1\r\nHost: localhost\r\nContent-Length: 999999999\r\n"
          b"Content-Type: image/jpeg\r\n\r\n"), 413, "payload_too_large", "/api/v1/similar"),
    ]
    for payload, status, code, instance in cases:
        got, headers, body = raw(port, payload)
        assert got == status, body
        assert headers["content-type"] == PROBLEM_MEDIA_TYPE
        problem = check_problem(json.loads(body), status, code, instance)
        assert "Traceback" not in problem["detail"]


def test_expired_cursor_is_410_cursor_expired(app, client, store, schemas):
    from search.cursor import SnapshotCache

    first = client.get("/api/v1/search?q=object:dog&limit=1").get_json()
    assert first["next_cursor"]
    app.extensions["tvindex_cursors"].snapshots = SnapshotCache()  # as after an eviction
    store.request_reindex("bd1")  # the catalogue changes: the page cannot be recomputed
    resp = client.get("/api/v1/search", query_string={"q": "object:dog",
                                                      "cursor": first["next_cursor"]})
    assert "expired" in problem_of(resp, schemas, 410, "cursor_expired")["detail"]
