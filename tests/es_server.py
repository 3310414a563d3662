"""Elasticsearch for the tests (a pytest plugin, registered in conftest.py).

With ``ELASTICSEARCH_URL`` set, the tests use that cluster (``ELASTICSEARCH_API_KEY`` or
user:password in the URL, ``ELASTICSEARCH_CA_CERTS`` for TLS) and start nothing; every test
gets its own index prefix, and its indices and templates are deleted afterwards. Otherwise a
session-scoped fixture starts the Elasticsearch-compatible emulator from PyPI ``noida-db``
(only its Elasticsearch service) on 127.0.0.1 with a free port and a temporary data directory,
and stops it at the end. Where the emulator lacks a feature, a test calls :func:`emulator_gap`,
which marks it xfail with the gap's name (the gaps are listed in the README).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tvindex.settings import ElasticsearchSettings

SESSION = uuid.uuid4().hex[:8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def noida_binary() -> Path | None:
    """The noida-db executable shipped inside the wheel (run directly: the console-script
    wrapper would leave its child running when stopped)."""
    try:
        from importlib.resources import files

        path = Path(str(files("noida_db").joinpath("noida-db")))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        found = shutil.which("noida-db") or str(Path(sys.prefix) / "bin" / "noida-db")
        return Path(found) if Path(found).is_file() else None
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


class EsServer:
    """A cluster the tests talk to: either an external one (``external``) or an emulator
    process this object starts, stops and restarts (same port and data directory)."""

    def __init__(self, url: str | None = None, data_dir: Path | None = None) -> None:
        self.external = url is not None
        self.data_dir = data_dir
        self.port = free_port() if url is None else None
        self.url = url or f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / "server.log" if data_dir else None
        self.version = ""
        self.name = "external cluster" if self.external else "noida-db"

    @property
    def emulated(self) -> bool:
        return not self.external

    def start(self, timeout_s: float = 30.0) -> None:
        if self.external:
            self.version = self._wait(timeout_s)
            return
        binary = noida_binary()
        if binary is None:
            raise RuntimeError("noida-db is not installed (pip install -e '.[test]')")
        assert self.data_dir is not None and self.log_path is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the process's life)
        self.proc = subprocess.Popen(
            [str(binary), "start", "--only", "elasticsearch", "--host", "127.0.0.1",
             "--elasticsearch-port", str(self.port), "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        self.version = self._wait(timeout_s)

    def _wait(self, timeout_s: float) -> str:
        import json
        import urllib.request

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"noida-db exited with {self.proc.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                if self.external:
                    from elasticsearch import Elasticsearch

                    es = Elasticsearch(self.url, **external_auth())
                    return str(es.info()["version"]["number"])
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    return str(json.load(resp)["version"]["number"])
            except Exception as exc:  # noqa: BLE001 (not up yet)
                last = exc
                time.sleep(0.1)
        raise RuntimeError(f"Elasticsearch at {self.url} did not answer in {timeout_s} s: {last}")

    def stop(self) -> None:
        """Stop the emulator (data stays in its data directory)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def config(self, prefix: str, **kwargs) -> ElasticsearchSettings:
        auth = external_auth() if self.external else {}
        base = {"url": self.url, "index_prefix": prefix, "shards": 1, "replicas": 0,
                "request_timeout_s": 10.0, "max_retries": 2, "retry_backoff_s": 0.05}
        if "api_key" in auth:
            base["api_key"] = auth["api_key"]
        if "ca_certs" in auth:
            base["ca_certs"] = auth["ca_certs"]
        base.update(kwargs)
        return ElasticsearchSettings(**base)


def external_auth() -> dict[str, str]:
    out = {}
    if os.environ.get("ELASTICSEARCH_API_KEY"):
        out["api_key"] = os.environ["ELASTICSEARCH_API_KEY"]
    if os.environ.get("ELASTICSEARCH_CA_CERTS"):
        out["ca_certs"] = os.environ["ELASTICSEARCH_CA_CERTS"]
    return out


def delete_prefix(cfg: ElasticsearchSettings) -> None:
    """Delete every index and template of a prefix, by name (clusters refuse wildcard
    deletes when action.destructive_requires_name is set, the 8.x default)."""
    from elasticsearch import Elasticsearch

    from search.backends.elasticsearch.mappings import KINDS, alias

    es = Elasticsearch(cfg.url, **external_auth())
    try:
        names = list(es.indices.get(index=f"{cfg.index_prefix}*", expand_wildcards="all"))
        if names:
            es.options(ignore_status=404).indices.delete(index=",".join(names))
        for kind in KINDS:
            es.options(ignore_status=404).indices.delete_index_template(
                name=alias(cfg.index_prefix, kind))
    finally:
        es.close()


@pytest.fixture(scope="session")
def es_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EsServer]:
    url = os.environ.get("ELASTICSEARCH_URL")
    server = EsServer(url) if url else EsServer(data_dir=tmp_path_factory.mktemp("noida"))
    try:
        server.start()
    except RuntimeError as exc:
        if os.environ.get("CI"):  # CI must test both backends: no silent skip there
            pytest.fail(f"no Elasticsearch for the tests: {exc}")
        pytest.skip(f"no Elasticsearch for the tests: {exc}")
    yield server
    server.stop()


@pytest.fixture()
def es_prefix() -> str:
    """A unique index prefix per test."""
    return f"tvt-{SESSION}-{uuid.uuid4().hex[:8]}-"


@pytest.fixture()
def es_config(es_server: EsServer, es_prefix: str) -> Iterator[ElasticsearchSettings]:
    cfg = es_server.config(es_prefix)
    yield cfg
    delete_prefix(cfg)


@pytest.fixture()
def own_es_server(tmp_path: Path) -> Iterator[EsServer]:
    """An emulator of the test's own, which it may stop and restart (fault tests)."""
    if os.environ.get("ELASTICSEARCH_URL"):
        pytest.skip("needs a server the test can stop and restart; not done to an external "
                    "cluster (ELASTICSEARCH_URL is set)")
    server = EsServer(data_dir=tmp_path / "noida")
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"no Elasticsearch emulator: {exc}")
    yield server
    server.stop()


def emulator_gap(server: EsServer, gap: str) -> None:
    """Mark the running test xfail when talking to the emulator, naming its gap."""
    if server.emulated:
        pytest.xfail(f"noida-db gap: {gap}")


class FaultProxy:
    """A fault-injecting HTTP proxy in front of a cluster (the network between tvindex and
    Elasticsearch, the one true external boundary): forwards every request, except that while
    ``fail_bulk`` is set, ``_bulk`` requests whose body contains it are answered 503, as an
    overloaded cluster does."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading
        import urllib.error
        import urllib.request

        self.upstream = upstream.rstrip("/")
        self.fail_bulk: bytes | None = None
        self.rejected = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.fail_bulk and "/_bulk" in self.path and proxy.fail_bulk in (body or b""):
                    proxy.rejected += 1
                    payload = (b'{"error":{"type":"es_rejected_execution_exception",'
                               b'"reason":"injected by the test proxy"},"status":503}')
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                req = urllib.request.Request(proxy.upstream + self.path, data=body,
                                             method=self.command)
                for k, v in self.headers.items():
                    if k.lower() not in ("host", "content-length", "connection"):
                        req.add_header(k, v)
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, headers, data = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as err:
                    status, headers, data = err.code, err.headers, err.read()
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def snapshot(store) -> dict:
    """What a store answers through the public interface, minus wall-clock timestamps: two
    stores holding the same catalogue give equal snapshots, whatever the backend."""
    from search.engine import run_search

    states = [s.__dict__ | {"indexed_at": None} for s in store.episode_states()]
    out: dict = {"states": states, "programmes": [p.to_dict() for p in store.programmes()],
                 "labels": [x.__dict__ for x in store.labels()]}
    for s in states:
        ep = store.episode(s["id"]).to_dict()
        ep.pop("indexed_at", None)
        out[f"episode {s['id']}"] = ep
        out[f"segments {s['id']}"] = [x.to_dict() for x in store.segments(s["id"])]
    for p in store.programmes():
        out[f"programme {p.id}"] = store.programme(p.id).to_dict()
    for ls in store.label_sets():
        for level in ("episode", "programme"):
            ids, vecs = store.vectors(level, ls.name)
            out[f"vectors {level} {ls.name}"] = (ids, vecs.tolist())
    for level in ("shot", "episode", "programme"):
        for q in ("object:person", "object:car OR object:bicycle", "object:person -object:car"):
            try:
                out[f"search {level} {q}"] = run_search(store, q, level, limit=50).to_dict()
            except Exception as exc:  # noqa: BLE001 (an unknown label is part of the answer)
                out[f"search {level} {q}"] = str(exc)
    return out


class known_gap:  # a context manager: `with known_gap(server, "..."):`
    """Run the block; if it fails on the emulator, the test is xfail naming the gap (on a real
    cluster, or once the emulator closes the gap, the block must pass)."""

    def __init__(self, server: EsServer, gap: str) -> None:
        self.server, self.gap = server, gap

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and self.server.emulated and isinstance(exc, Exception):
            pytest.xfail(f"noida-db gap: {self.gap} ({type(exc).__name__})")
        return False
