"""Faults while indexing real footage into Elasticsearch: the cluster goes away in the middle
of `tvindex index` (the test stops its server and starts it again), or keeps rejecting bulk
writes (a proxy answers 503). Bounded retries, then the episode is marked failed with the
reason, or stays pending when even that cannot reach the cluster; the next run completes the
catalogue with nothing lost or duplicated: the result equals a clean run's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from es_server import EsServer, FaultProxy, snapshot

from search.backends.elasticsearch.store import EsStore
from tvindex.settings import ElasticsearchSettings

pytestmark = pytest.mark.media


def write_manifest(tmp_path: Path, video_dir: Path) -> Path:
    m = tmp_path / "catalogue.csv"
    m.write_text("programme,episode_id,media_path,start_s,end_s\n"
                 f"Bikes,b1,{video_dir / 'bikes.mp4'},0,5.48\n"
                 f"Plaza,v1,{video_dir / 'vtest.avi'},,\n"
                 f"Bikes,b2,{video_dir / 'bikes.mp4'},5.48,10\n")
    return m


def cli_env(shared_dir: Path, tmp_path: Path, url: str, prefix: str) -> dict[str, str]:
    return dict(os.environ, TVINDEX_MODEL_DIR=str(shared_dir / "models"),
                TVINDEX_SHARED_DIR=str(shared_dir), TVINDEX_DATA_DIR=str(tmp_path / "data"),
                TVINDEX__TAGGERS__ACTIVE="[tflite-detector]", TVINDEX__SAMPLING__MODE="interval",
                TVINDEX__SAMPLING__EVERY_S="2", TVINDEX__CATALOGUE__BACKEND="elasticsearch",
                ELASTICSEARCH_URL=url, TVINDEX__ELASTICSEARCH__INDEX_PREFIX=prefix,
                TVINDEX__ELASTICSEARCH__REPLICAS="0", TVINDEX__ELASTICSEARCH__MAX_RETRIES="2",
                TVINDEX__ELASTICSEARCH__RETRY_BACKOFF_S="0.1",
                TVINDEX__ELASTICSEARCH__REQUEST_TIMEOUT_S="5")


def index(env: dict[str, str], manifest: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvindex.cli", "index", str(manifest),
                           "--no-progress"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def store_of(server: EsServer, prefix: str, url: str | None = None) -> EsStore:
    return EsStore(ElasticsearchSettings(url=url or server.url, index_prefix=prefix, replicas=0,
                            max_retries=2, retry_backoff_s=0.1, request_timeout_s=5))


def shot_count(store: EsStore) -> int:
    return int(store.es.count(index=store._idx["shots"])["count"])


def test_cluster_lost_mid_run_then_next_run_completes(tmp_path, shared_dir, video_dir,
                                                      own_es_server: EsServer):
    server = own_es_server
    manifest = write_manifest(tmp_path, video_dir)
    clean = index(cli_env(shared_dir, tmp_path, server.url, "clean-"), manifest)
    assert "indexed 3, unchanged 0, failed 0" in clean.stdout, clean.stderr

    env = cli_env(shared_dir, tmp_path, server.url, "run-")
    proc = subprocess.Popen([sys.executable, "-m", "tvindex.cli", "index", str(manifest),
                             "--no-progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watcher = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until b1 is written completely
            assert proc.poll() is None, proc.communicate()
            watcher = watcher or store_of(server, "run-")
            b1 = watcher._get("episodes", "b1")
            if b1 and b1["_source"]["status"] == "indexed" and not b1["_source"]["dirty"]:
                prog = watcher._get("programmes", b1["_source"]["programme_id"])
                if not prog["_source"]["stale"]:
                    break
            time.sleep(0.02)
        else:
            pytest.fail("b1 was not indexed in time")
        server.stop()  # the cluster goes away while v1 is being tagged
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        if watcher is not None:
            watcher.close()
    assert proc.returncode == 1, err  # the run completed; some episodes failed
    assert "indexed 1, unchanged 0, failed 2" in out, (out, err)
    assert "Traceback" not in err
    for ep in ("v1", "b2"):
        line = next(ln for ln in err.splitlines() if ln.startswith(f"  failed {ep}:"))
        assert "unavailable" in line and "Elasticsearch at http://127.0.0.1" in line, line

    server.start()  # back, with what it had stored
    with store_of(server, "run-") as store:
        states = {s.id: s.status for s in store.episode_states()}
        # marking them failed could not reach the cluster either: they stay pending
        assert states == {"b1": "indexed", "v1": "pending", "b2": "pending"}
        assert store.segments("v1") == [] and store.segments("b2") == []
    again = index(env, manifest)
    assert "indexed 2, unchanged 1, failed 0" in again.stdout, again.stderr
    with store_of(server, "run-") as store, store_of(server, "clean-") as reference:
        assert snapshot(store) == snapshot(reference)
        assert shot_count(store) == shot_count(reference)  # nothing duplicated


def test_bulk_rejections_mark_the_episode_failed_with_the_reason(tmp_path, shared_dir,
                                                                 video_dir,
                                                                 own_es_server: EsServer):
    from indexer.catalogue import load_catalogue
    from indexer.frame_tagging import choose_embedder
    from indexer.indexing import run_index
    from indexer.taggers import tagger_from_settings
    from tvindex.settings import load_settings

    server = own_es_server
    settings = load_settings(environ={"TVINDEX_MODEL_DIR": str(shared_dir / "models")},
                             overrides={"taggers.active": ["tflite-detector"],
                                        "sampling.mode": "interval", "sampling.every_s": 2})
    catalogue = load_catalogue(write_manifest(tmp_path, video_dir))
    taggers = [tagger_from_settings("tflite-detector", settings)]
    embedder = choose_embedder(taggers, settings.taggers.embedding)

    def run_index_into(store):
        return run_index(catalogue, store, taggers, settings.sampling, settings.aggregation,
                         embedder=embedder, batch_size=settings.taggers.batch_size,
                         progress=False)

    with store_of(server, "clean-") as reference:
        run_index_into(reference)
        expected = snapshot(reference)

    proxy = FaultProxy(server.url)
    try:
        with store_of(server, "run-", proxy.url) as store:
            proxy.fail_bulk = b'"_index":"run-shots"'  # shot writes are rejected (503)
            report = run_index_into(store)
            assert report.indexed == [] and set(report.failed) == {"b1", "v1", "b2"}
            assert proxy.rejected == 3 * 3  # every episode: 1 try + 2 retries
            states = {s.id: s for s in store.episode_states()}
            for ep in ("b1", "v1", "b2"):
                assert states[ep].status == "failed"
                assert "unavailable" in states[ep].error
                assert "es_rejected_execution_exception" in states[ep].error
                assert "run-shots" not in states[ep].error or ep in states[ep].error
            assert shot_count(store) == 0
            proxy.fail_bulk = None  # the cluster recovers
            report = run_index_into(store)
            assert sorted(report.indexed) == ["b1", "b2", "v1"] and not report.failed
            assert snapshot(store) == expected
            assert shot_count(store) == sum(len(store.segments(e)) for e in ("b1", "v1", "b2"))
    finally:
        proxy.close()
