"""A small hand-built catalogue for the web tests (no media decoding, no models), helpers the
other test_webui_* files import (``build_catalogue``, ``web_settings``, ``ApiSchemas``), and
tests of the store method the web layer added (request_reindex)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import waitress
from jsonschema import Draft202012Validator
from PIL import Image
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from search.backends.sqlite.store import SqliteStore
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.store import NotFound
from tvindex.settings import Settings, load_settings

OBJ = LabelSet("coco80", "sigmoid", ("person", "dog", "car", "bicycle", "traffic light"))
SCN = LabelSet("places365", "softmax", ("beach", "street", "kitchen", "forest path"))
XSS_TITLE = "<script>alert(1)</script>"
XSS_DESCRIPTION = '<img src=x onerror="alert(2)"> & friends'
API_KEY = "test-key-0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent
_DEMO: dict[str, Path] = {}


def index_demo(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    """The demo catalogue indexed into a temporary data directory with the CLI, once per
    session whichever test file asks first; returns the data directory."""
    if "data" not in _DEMO:
        data = tmp_path_factory.mktemp("webdemo")
        proc = subprocess.run(
            [sys.executable, "-m", "tvindex.cli", "--config", str(REPO / "demo" / "config.yaml"),
             "index", str(REPO / "demo" / "catalogue.csv"), "--data-dir", str(data),
             "--no-progress"], env=demo_env(shared_dir), capture_output=True, text=True,
            timeout=600, cwd=REPO, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "indexed 11, unchanged 0, failed 0" in proc.stdout, proc.stdout
        _DEMO["data"] = data
    return _DEMO["data"]


def demo_env(shared_dir: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, TVINDEX_SHARED_DIR=str(shared_dir),
                TVINDEX_MODEL_DIR=str(shared_dir / "models"), **extra)


@contextmanager
def run_serve(data_dir: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """``tvindex serve`` as a subprocess on a free loopback port; yields its base URL once
    /api/v1/health answers, and stops it afterwards."""
    # The log goes to a file, not a pipe, so that it can never block the server.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tvindex.cli", "--config",
             str(REPO / "demo" / "config.yaml"), "serve", "--port", "0", "--data-dir",
             str(data_dir), *args],
            env=env, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
        try:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line.startswith("tvindex: serving http://127.0.0.1:"):
                proc.wait(10)
                log.seek(0)
                raise AssertionError(f"tvindex serve did not start: {line!r} {log.read()}")
            url = line.split()[2].rstrip("/")
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(url + "/api/v1/health", timeout=5) as resp:
                        assert json.load(resp)["status"] == "ok"
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def web_settings(data_dir: Path, **server: object) -> Settings:
    """Settings for a web app over ``data_dir`` (environment ignored); ``server`` overrides
    server.* keys."""
    overrides: dict[str, object] = {"paths.data_dir": str(data_dir)}
    overrides.update({f"server.{k}": v for k, v in server.items()})
    return load_settings(None, overrides, environ={})


@contextmanager
def serve_in_thread(app: object, threads: int = 4) -> Iterator[str]:
    """The app behind a real waitress server on a free loopback port; yields its base URL."""
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # waitress has no stop(): close every channel from inside its own loop (the
        # trigger runs the thunk there), so that the loop ends without a select() race.
        def close_all() -> None:
            for channel in list(server._map.values()):
                channel.handle_close()

        server.trigger.pull_trigger(close_all)
        thread.join(10)
        server.task_dispatcher.shutdown()


class ApiSchemas:
    """Validates JSON bodies against the component schemas of the served OpenAPI document,
    resolving its $refs."""

    URI = "urn:tvindex:openapi"

    def __init__(self, document: dict) -> None:
        self.document = document
        self.registry = Registry().with_resource(
            self.URI, Resource.from_contents(document, default_specification=DRAFT202012))

    def validate(self, body: object, schema: str) -> None:
        assert schema in self.document["components"]["schemas"], schema
        validator = Draft202012Validator(
            {"$ref": f"{self.URI}#/components/schemas/{schema}"}, registry=self.registry)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 36), colour).save(buf, "JPEG")
    return buf.getvalue()


def _seg(index: int, obj: list[list[float]], scn: list[list[float]], t0: float,
         length: float = 5.0) -> SegmentTags:
    """A segment from per-frame probabilities (rows = frames); times in seconds of the file."""
    return SegmentTags(index, t0, t0 + length, t0 + length / 2,
                       {"coco80": aggregate(np.array(obj, np.float32), 0.5),
                        "places365": aggregate(np.array(scn, np.float32), 0.2)},
                       thumbnail=jpeg((40 * index % 255, 120, 200)))


def _tags(eid: str, segments: list[SegmentTags], duration: float) -> EpisodeTags:
    stats = {}
    for name, threshold in (("coco80", 0.5), ("places365", 0.2)):
        frames = np.concatenate([np.repeat(s.stats[name].score[None], s.stats[name].n_frames, 0)
                                 for s in segments])
        stats[name] = aggregate(frames, threshold)
    return EpisodeTags(eid, f"fp-{eid}", "v1", duration, segments, stats, "shots")


def _embedded(tags: EpisodeTags, embeddings: dict[str, np.ndarray] | None,
              model: str) -> EpisodeTags:
    """``tags`` with the given shot embeddings ("EPISODE@INDEX" -> [D]) and their
    frame-weighted mean as the episode's; unchanged without ``embeddings``."""
    if embeddings is None:
        return tags
    weighted = []
    for seg in tags.segments:
        seg.embedding = np.asarray(embeddings[f"{tags.episode_id}@{seg.index}"], np.float32)
        n = next(iter(seg.stats.values())).n_frames
        weighted.append(n * seg.embedding.astype(np.float64))
    tags.embedding = (np.sum(weighted, axis=0) / sum(
        next(iter(s.stats.values())).n_frames for s in tags.segments)).astype(np.float32)
    tags.embedding_model = model
    return tags


def build_catalogue(root: Path, embeddings: dict[str, np.ndarray] | None = None,
                    embedding_model: str = "fake-embedder:test") -> SqliteStore:
    """Four programmes: two with dogs on beaches, a city one whose title and description are
    hostile HTML, and one whose only episode is still pending. Media files are placeholder
    bytes (the server only streams them); ``c1`` is the time range [10, 20) of its file.
    ``embeddings`` (shot id -> unit [D] vector, for all 7 shots) stores shot and episode
    embeddings made by ``embedding_model`` too; without it the catalogue has none."""
    media = root / "media"
    media.mkdir(parents=True, exist_ok=True)
    for name in ("a.mp4", "b.mp4", "c.mp4", "k.mp4"):
        (media / name).write_bytes(bytes(range(256)) * 64)  # 16 KiB
    store = SqliteStore(root / "catalogue.sqlite", min_score=0.05, top_k=0)
    store.upsert_catalogue(
        [ProgrammeRecord("beach-dogs", "Beach Dogs", "Dogs & waves", "nature"),
         ProgrammeRecord("dog-days", "Dog Days", "More dogs", "nature"),
         ProgrammeRecord("city", f"{XSS_TITLE} City", XSS_DESCRIPTION, "news"),
         ProgrammeRecord("kitchen", "Kitchen Talk", "", "food")],
        [EpisodeRecord("bd1", "beach-dogs", "One", str(media / "a.mp4"), dt.date(2021, 5, 1)),
         EpisodeRecord("bd2", "beach-dogs", "Two", str(media / "b.mp4"), dt.date(2019, 5, 1)),
         EpisodeRecord("dd1", "dog-days", "Sunny", str(media / "b.mp4"), dt.date(2020, 6, 1)),
         EpisodeRecord("c1", "city", f"Rush {XSS_TITLE}", str(media / "c.mp4"),
                       dt.date(2022, 1, 1), start_s=10.0, end_s=20.0),
         EpisodeRecord("k1", "kitchen", "Pending", str(media / "k.mp4"), dt.date(2023, 1, 1))])
    store.register_label_sets([OBJ, SCN])

    def write(tags: EpisodeTags) -> None:
        store.write_episode(_embedded(tags, embeddings, embedding_model))

    write(_tags("bd1", [
        _seg(0, [[0.9, 0.9, 0.0, 0.0, 0.0], [0.7, 0.7, 0.0, 0.0, 0.0]], [[0.8, 0.1, 0.05, 0.05]] * 2,
             0.0),
        _seg(1, [[0.9, 0.3, 0.6, 0.0, 0.0]], [[0.6, 0.3, 0.05, 0.05]], 5.0)], 10.0))
    write(_tags("bd2", [
        _seg(0, [[0.2, 0.95, 0.0, 0.0, 0.0]], [[0.9, 0.05, 0.0, 0.05]], 0.0)], 5.0))
    write(_tags("dd1", [
        _seg(0, [[0.3, 0.8, 0.0, 0.0, 0.0]], [[0.7, 0.1, 0.0, 0.2]], 0.0),
        _seg(1, [[0.1, 0.9, 0.0, 0.0, 0.0]], [[0.2, 0.1, 0.0, 0.7]], 5.0)], 10.0))
    write(_tags("c1", [
        _seg(0, [[0.99, 0.0, 0.9, 0.8, 0.6]], [[0.0, 0.9, 0.1, 0.0]], 10.0),
        _seg(1, [[0.95, 0.6, 0.9, 0.0, 0.7]], [[0.1, 0.8, 0.1, 0.0]], 15.0)], 10.0))
    return store


@pytest.fixture()
def store(tmp_path: Path) -> SqliteStore:
    return build_catalogue(tmp_path)


def test_request_reindex_keeps_tags_until_the_next_run(store: SqliteStore):
    before = store.episode("bd1")
    assert before.reindex_requested is False
    store.request_reindex("bd1")
    after = store.episode("bd1")
    assert after.reindex_requested is True
    assert after.status == "indexed" and after.top_labels == before.top_labels
    state = {s.id: s for s in store.episode_states()}["bd1"]
    # The indexer skips an episode only when the stored fingerprint equals the media's.
    assert state.fingerprint is None and state.status == "indexed"
    # Writing the episode again (what the next run does) clears the request.
    store.write_episode(_tags("bd1", [
        _seg(0, [[0.9, 0.9, 0.0, 0.0, 0.0]], [[0.8, 0.1, 0.05, 0.05]], 0.0)], 5.0))
    assert store.episode("bd1").reindex_requested is False


def test_request_reindex_of_a_pending_episode_is_not_reported(store: SqliteStore):
    store.request_reindex("k1")
    assert store.episode("k1").reindex_requested is False  # pending: indexed anyway


def test_request_reindex_unknown_episode(store: SqliteStore):
    with pytest.raises(NotFound, match="nope"):
        store.request_reindex("nope")
