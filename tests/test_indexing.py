"""Indexing real footage end to end: failures recorded, idempotence, kill -9 and resume,
search while indexing, and the `tvindex tag` / `tvindex search` acceptance commands."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.backends.sqlite.store import SqliteStore
from search.engine import run_search
from tvindex.cli import main

pytestmark = pytest.mark.media
TABLES = ("programmes", "episodes", "label_sets", "labels", "segments", "segment_postings",
          "episode_vectors", "episode_labels", "programme_vectors", "programme_labels")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tvindex.cli", *args]


@pytest.fixture()
def env(shared_dir: Path, tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ, TVINDEX_MODEL_DIR=str(shared_dir / "models"),
             TVINDEX_SHARED_DIR=str(shared_dir), TVINDEX_DATA_DIR=str(tmp_path / "data"),
             TVINDEX__TAGGERS__ACTIVE="[tflite-detector]", TVINDEX__SAMPLING__MODE="interval",
             TVINDEX__SAMPLING__EVERY_S="1")
    return e


def write_manifest(tmp_path: Path, rows: list[str]) -> Path:
    m = tmp_path / "catalogue.csv"
    m.write_text("programme,episode_id,media_path,start_s,end_s\n" + "\n".join(rows) + "\n")
    return m


def dump(db_path: Path) -> dict[str, list]:
    """Every row of every table, minus the run's wall-clock timestamps."""
    db = sqlite3.connect(db_path)
    out = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    cols = [r[1] for r in db.execute("PRAGMA table_info(episodes)")]
    at = cols.index("indexed_at")
    out["episodes"] = [r[:at] + r[at + 1:] for r in out["episodes"]]
    return out


def run_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cli(*args), env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def test_bad_files_fail_cleanly_and_the_rest_is_indexed(tmp_path, env, video_dir, bad_media):
    m = write_manifest(tmp_path, [
        f"Bikes,b1,{video_dir / 'bikes.mp4'},0,5.48",
        f"Broken,trunc,{bad_media['truncated']},,",
        f"Broken,empty,{bad_media['empty']},,",
        f"Broken,text,{bad_media['text']},,",
        f"Bikes,b2,{video_dir / 'bikes.mp4'},5.48,10"])
    proc = run_cli(env, "index", str(m), "--no-progress")
    assert "indexed 2, unchanged 0, failed 3" in proc.stdout
    assert "Traceback" not in proc.stderr
    status = run_cli(env, "status").stdout
    assert "5 episodes: 2 indexed, 3 failed, 0 pending" in status
    for name in ("trunc", "empty", "text"):
        line = [ln for ln in status.splitlines() if f"/{name} " in ln or ln.endswith(f"/{name}")]
        assert line and "failed" in line[0]
    # idempotent: a second run skips everything and changes no row
    db = Path(env["TVINDEX_DATA_DIR"]) / "catalogue.sqlite"
    before = dump(db)
    proc = run_cli(env, "index", str(m), "--no-progress")
    assert "indexed 0, unchanged 2, failed 3" in proc.stdout
    assert dump(db) == before


def test_kill_9_mid_episode_then_resume_equals_clean_run(tmp_path, env, video_dir):
    m = write_manifest(tmp_path, [f"Bikes,b1,{video_dir / 'bikes.mp4'},0,5.48",
                                  f"Plaza,v1,{video_dir / 'vtest.avi'},,"])
    clean_env = dict(env, TVINDEX_DATA_DIR=str(tmp_path / "clean"))
    run_cli(clean_env, "index", str(m), "--no-progress")

    db = Path(env["TVINDEX_DATA_DIR"]) / "catalogue.sqlite"
    proc = subprocess.Popen(cli("index", str(m), "--no-progress"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until the first episode is committed
            if db.exists():
                try:
                    done = sqlite3.connect(db).execute(
                        "SELECT count(*) FROM episodes WHERE status='indexed'").fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0
                if done >= 1:
                    break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("no episode was indexed in time")
        proc.send_signal(signal.SIGKILL)  # now in the middle of the long second episode
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    con = sqlite3.connect(db)
    states = dict(con.execute("SELECT id, status FROM episodes").fetchall())
    assert states == {"b1": "indexed", "v1": "pending"}
    assert con.execute("SELECT count(*) FROM segments s JOIN episodes e ON e.key = s.episode_key "
                       "WHERE e.id='v1'").fetchone()[0] == 0
    con.close()
    proc = run_cli(env, "index", str(m), "--no-progress")
    assert "indexed 1, unchanged 1, failed 0" in proc.stdout
    assert dump(db) == dump(Path(clean_env["TVINDEX_DATA_DIR"]) / "catalogue.sqlite")


def test_search_answers_during_an_indexing_run(tmp_path, env, video_dir):
    m = write_manifest(tmp_path, [f"Bikes,b1,{video_dir / 'bikes.mp4'},,",
                                  f"Plaza,v1,{video_dir / 'vtest.avi'},,",
                                  f"Plaza,v2,{video_dir / 'vtest.avi'},0,40"])
    db = Path(env["TVINDEX_DATA_DIR"]) / "catalogue.sqlite"
    proc = subprocess.Popen(cli("index", str(m), "--no-progress"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answered = []
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if db.exists():
                try:
                    store = SqliteStore(db)
                    if store.labels(counts=False):
                        t0 = time.perf_counter()
                        page = run_search(store, "object:person", "shot")
                        answered.append((time.perf_counter() - t0, page.total))
                    store.close()
                except Exception as exc:
                    if "locked" in str(exc):
                        pytest.fail(f"a reader was blocked by the indexer: {exc}")
                    raise
            time.sleep(0.05)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert answered, "no search ran while indexing"
    assert max(t for t, _ in answered) < 2.0


def test_tag_cli_on_broken_files_is_one_clear_error(bad_media, env, capsys, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for path in bad_media.values():
        assert main(["tag", str(path), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tvindex: error: ") and path.name in err[0]
    assert main(["tag", "/nonexistent.mp4"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_tag_cli_acceptance_on_bikes_and_vtest(env, video_dir, capsys, monkeypatch):
    """`tvindex tag bikes.mp4 --sampling shots` with the two offline teachers."""
    import json

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("TVINDEX__TAGGERS__ACTIVE")
    assert main(["tag", str(video_dir / "bikes.mp4"), "--sampling", "shots", "--json",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["taggers"] == ["tflite-detector", "timm-classifier"]
    shots = {f["shot"]["index"]: f for f in out["frames"]}
    assert 4 <= len(shots) <= 6
    cyclist = next(f for f in out["frames"] if f["shot"]["start_s"] <= 5.0 < f["shot"]["end_s"])
    top = [x["label"] for x in cyclist["labels"]["coco80"]]
    assert {"bicycle", "person"} <= set(top), top
    assert main(["tag", str(video_dir / "vtest.avi"), "--every", "20", "--taggers",
                 "tflite-detector", "--json", "--no-progress"]) == 0
    frames = json.loads(capsys.readouterr().out)["frames"]
    assert len(frames) == 4
    assert all(f["labels"]["coco80"][0]["label"] == "person" for f in frames)


def test_config_change_reindexes_and_replaces_old_tags(tmp_path, env, video_dir):
    m = write_manifest(tmp_path, [f"Bikes,b1,{video_dir / 'bikes.mp4'},0,5.48",
                                  f"Bikes,b2,{video_dir / 'bikes.mp4'},5.48,10"])
    run_cli(env, "index", str(m), "--no-progress")
    changed = dict(env, TVINDEX__SAMPLING__EVERY_S="2.5")
    proc = run_cli(changed, "index", str(m), "--no-progress")
    assert "indexed 2, unchanged 0, failed 0" in proc.stdout
    clean = dict(changed, TVINDEX_DATA_DIR=str(tmp_path / "clean"))
    run_cli(clean, "index", str(m), "--no-progress")
    db = Path(env["TVINDEX_DATA_DIR"]) / "catalogue.sqlite"
    assert dump(db) == dump(Path(clean["TVINDEX_DATA_DIR"]) / "catalogue.sqlite")


@pytest.mark.parametrize("mode", ["interval", "keyframes", "shots"])
def test_each_episode_file_is_probed_once(tmp_path, env, video_dir, capsys, monkeypatch, mode):
    """`tvindex index` probes an episode's file once and samples it with that MediaInfo (the
    sampler opens the file for decoding without probing it again); an unchanged episode is
    not opened at all."""
    from indexer.media import probing

    probed: list[str] = []
    real = probing._probe

    def spy(src):  # every probe, whoever asks for it, goes through _probe
        probed.append(str(src.path))
        return real(src)

    monkeypatch.setattr(probing, "_probe", spy)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TVINDEX__SAMPLING__MODE", mode)
    monkeypatch.setenv("TVINDEX__SAMPLING__EVERY_S", "2")
    bikes, vtest = (video_dir / "bikes.mp4").resolve(), (video_dir / "vtest.avi").resolve()
    m = write_manifest(tmp_path, [f"Bikes,b1,{bikes},0,5.48", f"Bikes,b2,{bikes},5.48,10",
                                  f"Town,v1,{vtest},,"])
    assert main(["index", str(m), "--no-progress"]) == 0
    assert "indexed 3, unchanged 0, failed 0" in capsys.readouterr().out
    assert sorted(probed) == sorted([str(bikes), str(bikes), str(vtest)])
    probed.clear()
    assert main(["index", str(m), "--no-progress"]) == 0
    assert "indexed 0, unchanged 3, failed 0" in capsys.readouterr().out
    assert probed == []
