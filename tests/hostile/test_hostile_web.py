"""Hostile web clients (issue 14): deeply nested JSON, slow-loris connections, malformed and
oversized requests answered by waitress itself, foreign Host names (DNS rebinding), an
unreachable store, and a picture of 36 megapixels. Each case asserts the documented status
and JSON error; none may log a traceback.

The servers are real: ``tvindex serve --port 0`` in a subprocess on 127.0.0.1 (the slow-loris
and raw-socket cases) or the real Flask app (the others)."""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from serve_process import servers

from tvindex.settings import load_settings
from webui import create_app
from webui.app import SECURITY_HEADERS
from webui.app import close_app as close_web_app
from webui.errors import PROBLEM_TITLES, PROBLEM_TYPE_BASE


def web_app(data_dir: Path, **overrides: object):
    settings = load_settings(None, {"paths.data_dir": str(data_dir), **overrides}, environ={})
    return create_app(settings)


def assert_json_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> str:
    assert status == expected, body
    assert headers["content-type"].startswith("application/problem+json")
    for name, value in SECURITY_HEADERS.items():
        assert headers[name.lower()] == value
    problem = json.loads(body)
    assert problem["status"] == expected and problem["detail"]
    assert problem["code"] in PROBLEM_TITLES and problem["title"] == PROBLEM_TITLES[problem["code"]]
    assert problem["type"] == PROBLEM_TYPE_BASE + problem["code"]
    error = problem["error"]  # the deprecated shape, kept beside it for one release
    assert error["status"] == expected and error["message"] == problem["detail"]
    return problem["detail"]


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# --- the Flask app ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_400(tmp_path, caplog, depth):
    app = web_app(tmp_path)
    try:
        client = app.test_client()
        for body in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
            resp = client.post("/api/v1/similar", data=body, content_type="application/json")
            message = assert_json_error(resp.status_code, {
                k.lower(): v for k, v in resp.headers.items()}, resp.data, 400)
            assert "JSON" in message
    finally:
        close_web_app(app)
    no_tracebacks(caplog)


def test_unreachable_store_is_503_without_internals(tmp_path, caplog, es_config):
    """The store answers when the app opens it, then its network goes away: 503 with a
    generic message and Retry-After; the backend's URL and error only in the log."""
    from es_server import FaultProxy

    proxy = FaultProxy(es_config.url)
    port = proxy.url.rsplit(":", 1)[1]
    fields = es_config.model_dump(mode="json")
    overrides = {f"elasticsearch.{k}": v for k, v in fields.items() if v is not None}
    overrides.update({"catalogue.backend": "elasticsearch", "elasticsearch.url": proxy.url,
                      "elasticsearch.max_retries": 0, "elasticsearch.request_timeout_s": 2.0})
    app = web_app(tmp_path, **overrides)
    proxy.close()  # the cluster is unreachable from now on
    try:
        client = app.test_client()
        for path in ("/api/v1/search?q=dog", "/api/v1/programmes"):
            resp = client.get(path)
            headers = {k.lower(): v for k, v in resp.headers.items()}
            message = assert_json_error(resp.status_code, headers, resp.data, 503)
            assert message == "the catalogue store is unavailable; try again later"
            assert int(headers["retry-after"]) > 0
            problem = json.loads(resp.data)
            assert problem["code"] == "store_unavailable"
            assert problem["retry_after"] == int(headers["retry-after"])
            assert port not in resp.get_data(as_text=True)
        page = client.get("/?q=dog")
        assert page.status_code == 503 and port not in page.get_data(as_text=True)
    finally:
        close_web_app(app)
    # The detail is logged for the operator, as one line without a traceback.
    logged = [r for r in caplog.records if r.name == "webui.errors"]
    assert logged and all(not r.exc_info for r in logged)
    assert any(port in r.getMessage() for r in logged)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example",
                                  "localhost.evil.example", "[::2]:80", "attacker"])
def test_foreign_host_names_are_400(tmp_path, host):
    app = web_app(tmp_path)
    try:
        client = app.test_client()
        for path in ("/api/v1/programmes", "/"):
            resp = client.get(path, headers={"Host": host})
            assert resp.status_code == 400
            assert "server.allowed_hosts" in resp.get_data(as_text=True)
        resp = client.get("/api/v1/programmes", headers={"Host": host})
        assert_json_error(400, {k.lower(): v for k, v in resp.headers.items()}, resp.data, 400)
    finally:
        close_web_app(app)


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:1234", "[::1]:80",
                                  "LOCALHOST"])
def test_loopback_host_names_are_served(tmp_path, host):
    app = web_app(tmp_path)
    try:
        assert app.test_client().get("/api/v1/programmes",
                                     headers={"Host": host}).status_code == 200
    finally:
        close_web_app(app)


def test_configured_host_names(tmp_path):
    app = web_app(tmp_path, **{"server.allowed_hosts": ["tv.example", ".lan.example"]})
    try:
        client = app.test_client()
        for host, status in (("tv.example", 200), ("a.lan.example:80", 200),
                             ("lan.example", 200), ("localhost", 400), ("xlan.example", 400)):
            resp = client.get("/api/v1/programmes", headers={"Host": host})
            assert resp.status_code == status, host
    finally:
        close_web_app(app)


def test_a_36_megapixel_png_is_decoded_small(tmp_path, caplog):
    """A compressible 36-megapixel PNG (about 100 KB) reaches the embedder scaled down; it
    never answers 500 (the catalogue has no embeddings: 409 after decoding)."""
    im = Image.new("RGB", (6000, 6000), (200, 30, 30))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    assert len(buf.getvalue()) < 200_000
    app = web_app(tmp_path)
    try:
        resp = app.test_client().post("/api/v1/similar", data={
            "image": (io.BytesIO(buf.getvalue()), "big.png")},
            content_type="multipart/form-data")
        assert resp.status_code in (200, 409), resp.data
    finally:
        close_web_app(app)
    no_tracebacks(caplog)


# --- a real server ------------------------------------------------------------------------


@pytest.fixture()
def serve(tmp_path) -> Iterator:
    # tvindex serve refuses a data directory without a catalogue (issue 16): an empty one
    from search.backends.sqlite.store import SqliteStore

    SqliteStore(tmp_path / "catalogue.sqlite").close()
    yield from servers(tmp_path)


def raw(port: int, payload: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``payload`` as is; the answer's status, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            # The server closes after an error answer with the rest of an oversized request
            # unread, which resets the connection after the answer.
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def get(port: int, path: str, timeout: float) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_waitress_errors_have_the_json_shape_and_headers(serve):
    port = serve()
    cases = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        ((b"POST /api/v1/similar HTTP/1.1\r\nHost: localhost\r\nContent-Length: 999999999\r\n"
         b"Content-Type: application/json\r\n\r\n"), 413),
        (b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n", 400),
    ]
    for payload, expected in cases:
        status, headers, body = raw(port, payload)
        message = assert_json_error(status, headers, body, expected)
        assert "Traceback" not in message and "generated by" not in message
    status, headers, body = raw(port, b"GET /api/v1/programmes HTTP/1.1\r\nHost: evil.example"
                                      b"\r\nConnection: close\r\n\r\n")
    assert "server.allowed_hosts" in assert_json_error(status, headers, body, 400)


def test_slow_loris_does_not_stall_the_server(serve):
    """150 half-sent requests (more than waitress's default 100 connections) and a client
    dripping one header byte at a time: a normal request is still answered within seconds,
    and the slow ones are closed after server.header_timeout_s."""
    port = serve(header_timeout_s="2", connection_limit="100")
    sockets: list[socket.socket] = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            sockets.append(sock)
        drip = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(drip)
        drip.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Drip: ")
        started = time.monotonic()
        assert get(port, "/api/v1/programmes", timeout=8) == 200
        assert time.monotonic() - started < 6
        # The dripping client keeps sending, yet is cut off after the header timeout.
        closed_after = None
        while time.monotonic() - started < 8:
            try:
                drip.sendall(b"a")
                drip.settimeout(0.3)
                if drip.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
        assert closed_after is not None and closed_after < 6
        # ... and so is every half-sent request.
        sockets[0].settimeout(3)
        assert sockets[0].recv(1) == b""
    finally:
        for sock in sockets:
            sock.close()
