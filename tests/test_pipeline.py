"""The pipelined local engine (indexer.pipeline): decode workers give the same catalogue as
the sequential engine byte for byte; a killed decode worker loses nothing; a run with
nothing to do builds no tagger; worker pipes are bounded and per worker."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.media


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tvindex.cli", *args]


@pytest.fixture()
def env(shared_dir: Path, tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, TVINDEX_MODEL_DIR=str(shared_dir / "models"),
                TVINDEX_SHARED_DIR=str(shared_dir), TVINDEX_DATA_DIR=str(tmp_path / "data"),
                TVINDEX__TAGGERS__ACTIVE="[tflite-detector]", TVINDEX__SAMPLING__MODE="interval",
                TVINDEX__SAMPLING__EVERY_S="1", TVINDEX__TAGGERS__BATCH_SIZE="4")


def write_manifest(tmp_path: Path, rows: list[str]) -> Path:
    m = tmp_path / "catalogue.csv"
    m.write_text("programme,episode_id,media_path,start_s,end_s\n" + "\n".join(rows) + "\n")
    return m


def dump_all(db_path: Path, when: tuple[str, ...] = ("indexed_at",)) -> dict[str, list]:
    """Every row of every table (thumbnails and vectors included), minus the columns that
    say when a row was written (``when``: the wall-clock ``indexed_at`` of episodes; add
    ``seq``, the store's write version, where episodes may finish in another order)."""
    db = sqlite3.connect(db_path)
    tables = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
    out = {}
    for t in tables:
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({t})")]
        rows = [tuple(v for c, v in zip(cols, r) if c not in when)
                for r in db.execute(f"SELECT * FROM {t}")]
        out[t] = sorted(rows, key=repr)
    db.close()
    return out


def read_models(db_path: Path) -> dict:
    """What readers see: states, programmes, every episode, segment and thumbnail."""
    from search.backends.sqlite.store import SqliteStore

    with SqliteStore(db_path) as store:
        states = sorted((s.id, s.status, s.fingerprint, s.config_version)
                        for s in store.episode_states())
        out: dict = {"states": states, "programmes": store.programmes()}
        for ep_id, status, *_ in states:
            if status != "indexed":
                continue
            segs = store.segments(ep_id)
            out[ep_id] = (store.episode(ep_id), segs,
                          [store.thumbnail(ep_id, s.index) for s in segs])
    return out


def _catalogue(tmp_path: Path, video_dir: Path, bad_media: dict[str, Path]) -> Path:
    bikes, car, bunny = (video_dir / n for n in ("bikes.mp4", "carphone_pristine.mp4",
                                                 "bigbuckbunny.mp4"))
    return write_manifest(tmp_path, [
        f"Bikes,b1,{bikes},0,5.48", f"Bikes,b2,{bikes},5.48,10",
        f"Car,c1,{car},0,2", f"Car,c2,{car},2,4",
        f"Bunny,r1,{bunny},0,2.64", f"Bunny,r2,{bunny},2.64,5.28",
        f"Broken,trunc,{bad_media['truncated']},,", f"Broken,text,{bad_media['text']},,"])


@pytest.mark.parametrize("mode", ["interval",
                                  pytest.param("shots", marks=pytest.mark.slow)])
def test_pipelined_catalogue_equals_sequential_byte_for_byte(tmp_path, env, video_dir,
                                                             bad_media, monkeypatch, mode):
    """The same taggers, the same catalogue indexed by the sequential engine (run_index,
    FFmpeg's decoder threads) and by the pipelined one with 2 decode workers decoding in
    one thread each (--decode-threads 1): every table and every read model are equal,
    failures included."""
    from indexer.catalogue import load_catalogue
    from indexer.fingerprints import FingerprintCache
    from indexer.indexing import run_index
    from indexer.pipeline.engine import index_catalogue
    from indexer.pipeline.models import Models
    from search.backends.sqlite.store import SqliteStore
    from tvindex.settings import load_settings

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TVINDEX__SAMPLING__MODE", mode)
    settings = load_settings(None, {})
    catalogue = load_catalogue(_catalogue(tmp_path, video_dir, bad_media))
    models = Models.from_settings(settings, tmp_path / "piped")
    taggers, embedder = models.get()
    seq_db, piped_db = tmp_path / "seq.sqlite", tmp_path / "piped.sqlite"
    with SqliteStore(seq_db) as store:
        seq = run_index(catalogue, store, taggers, settings.sampling, settings.aggregation,
                        embedder=embedder, batch_size=4, progress=False)
    from indexer.media import source

    monkeypatch.setattr(source, "_decode_threads", 0)
    source.set_decode_threads(1)  # the workers fork with it
    with SqliteStore(piped_db) as store:
        piped = index_catalogue(catalogue, store, models, settings.sampling,
                                settings.aggregation, batch_size=4, progress=False,
                                fingerprints=FingerprintCache(tmp_path / "fp.sqlite"),
                                workers=2)
    assert sorted(piped.indexed) == sorted(seq.indexed) == ["b1", "b2", "c1", "c2", "r1", "r2"]
    assert piped.failed.keys() == seq.failed.keys() == {"trunc", "text"}
    assert piped.frames == seq.frames > 0
    assert dump_all(piped_db) == dump_all(seq_db)
    assert read_models(piped_db) == read_models(seq_db)


def test_cli_nothing_to_do_builds_no_tagger(tmp_path, env, video_dir):
    """`tvindex index` on an indexed, unchanged catalogue: the cached configuration version
    says so without importing torch or reading a model; a changed setting builds them."""
    m = write_manifest(tmp_path, [f"Car,c1,{video_dir / 'carphone_pristine.mp4'},0,2"])
    first = subprocess.run(cli("index", str(m), "--no-progress", "--workers", "1"), env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    assert "indexed 1, unchanged 0, failed 0" in first.stdout
    probe = ("import sys, time; from tvindex.cli import main; t = time.perf_counter(); "
             f"rc = main(['index', {str(m)!r}, '--no-progress']); "
             "print('torch' in sys.modules, 'tflite_runtime' in sys.modules "
             "or 'ai_edge_litert' in sys.modules, rc, time.perf_counter() - t)")
    again = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert "indexed 0, unchanged 1, failed 0" in again.stdout
    torch_loaded, tflite_loaded, rc, _seconds = again.stdout.split("\n")[-2].split()
    assert (torch_loaded, tflite_loaded, rc) == ("False", "False", "0")
    changed = subprocess.run([sys.executable, "-c", probe],
                             env=dict(env, TVINDEX__SAMPLING__EVERY_S="0.5"),
                             capture_output=True, text=True, timeout=300, check=False)
    assert "indexed 1, unchanged 0, failed 0" in changed.stdout, changed.stderr


@pytest.mark.slow  # two CLI runs over 78 frames: ~20-30 s on a quiet 2-core machine
def test_killing_a_decode_worker_loses_nothing(tmp_path, env, video_dir):
    """SIGKILL one decode worker of a running `tvindex index --workers 2`: its episode is
    decoded again by a new worker, the run ends with every episode indexed, and the
    catalogue equals a clean run's."""
    import psutil

    vtest = video_dir / "vtest.avi"
    m = write_manifest(tmp_path, [f"Plaza,p{i},{vtest},{i * 13},{i * 13 + 13}"
                                  for i in range(6)])
    clean = dict(env, TVINDEX_DATA_DIR=str(tmp_path / "clean"))
    proc = subprocess.run(cli("index", str(m), "--no-progress", "--workers", "0"), env=clean,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    db = Path(env["TVINDEX_DATA_DIR"]) / "catalogue.sqlite"
    run = subprocess.Popen(cli("index", str(m), "--no-progress", "--workers", "2", "--json"),
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and killed is None:
            assert run.poll() is None, ("the run ended before a worker could be killed",
                                        run.communicate())
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:  # never creates
                    done = con.execute(
                        "SELECT count(*) FROM episodes WHERE status='indexed'").fetchone()[0]
            except sqlite3.Error:
                done = 0
            children = psutil.Process(run.pid).children()
            if done >= 1 and children:
                killed = children[0].pid
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.02)
        assert killed is not None, "no episode was indexed in time"
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    # Its episode (or, had it been between episodes, the next one it was given) went again.
    assert "decode worker killed by signal 9; decoding it again" in err
    report = json.loads(out)
    assert report["indexed"] == 6 and not report["failed"]
    assert dump_all(db) == dump_all(Path(clean["TVINDEX_DATA_DIR"]) / "catalogue.sqlite")


def test_worker_pool_reports_a_killed_worker_and_replaces_it(video_dir):
    """The pool's own contract: frames come back in chunks of at most the batch size, in
    order; a worker killed mid-task is one DIED message naming the signal, for its job."""
    from indexer.media import Sampler, probe
    from indexer.pipeline.decode import DONE, FRAMES
    from indexer.pipeline.workers import DIED, WorkerPool

    path = video_dir / "vtest.avi"
    info = probe(path)
    sampler = Sampler("interval", 0.5, max_side=64)
    with WorkerPool(1) as pool:
        (worker,) = pool.workers
        pool.submit(worker, 1, (path, info, 0.0, 10.0, sampler, 3))
        chunks = []
        while True:
            [(w, (kind, job, payload))] = pool.wait(timeout=60)
            assert w is worker and job == 1
            if kind == DONE:
                break
            assert kind == FRAMES
            chunks.append(payload)
        assert [len(c) for c in chunks] == [3] * 6 + [2]
        assert [f.index for c in chunks for f in c] == list(range(20))
        worker.job = None
        pool.submit(worker, 2, (path, info, 0.0, None, Sampler("shots"), 3))
        os.kill(worker.pid, signal.SIGKILL)
        messages = []
        while not messages or messages[-1][1][0] != DIED:
            messages += pool.wait(timeout=60)
        w, (kind, job, reason) = messages[-1]
        assert (w, kind, job) == (worker, DIED, 2)
        assert reason == f"decode worker killed by signal {signal.SIGKILL}"
        new = pool.replace(worker)
        assert new.pid != worker.pid and pool.pids() == [new.pid]
