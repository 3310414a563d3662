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
    proc = run_cli(env, "index", str(m), "--no-progress", check=False)
    assert proc.returncode == 1, proc.stderr  # the run completed; some episodes failed
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
    proc = run_cli(env, "index", str(m), "--no-progress", check=False)
    assert proc.returncode == 1, proc.stderr
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


def _status_without_times(env: dict[str, str]) -> list[dict]:
    import json

    rows = json.loads(run_cli(env, "status", "--json").stdout)
    return [{k: v for k, v in r.items() if k != "indexed_at"} for r in rows]


def test_two_runs_on_one_data_dir_tag_each_episode_once(tmp_path, env, video_dir):
    """Two `tvindex index` runs started together on one data dir: their `indexed` lists are
    disjoint and cover the catalogue, and the catalogue equals a single clean run's."""
    import json

    bikes, vtest, car = video_dir / "bikes.mp4", video_dir / "vtest.avi", \
        video_dir / "carphone_pristine.mp4"
    rows = [f"Bikes,b{i},{bikes},{i * 2.5},{i * 2.5 + 2.5}" for i in range(4)]
    rows += [f"Plaza,p{i},{vtest},{i * 8},{i * 8 + 8}" for i in range(4)]
    rows += [f"Car,c{i},{car},{i * 2},{i * 2 + 2}" for i in range(2)]
    m = write_manifest(tmp_path, rows)
    ids = {r.split(",")[1] for r in rows}
    procs = [subprocess.Popen(cli("index", str(m), "--no-progress", "--json"), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "Traceback" not in err
        outs.append(json.loads(out))
    done = [set(o["indexed_ids"]) for o in outs]
    assert not done[0] & done[1], "an episode was tagged by both runs"
    assert done[0] | done[1] == ids
    assert all(not o["failed"] for o in outs)
    for o, d in zip(outs, done):  # what a run left to the other is what the other did
        assert set(o["by_other_run"]) <= ids - d
        assert len(d) + o["skipped"] + len(o["by_other_run"]) <= len(ids)

    clean = dict(env, TVINDEX_DATA_DIR=str(tmp_path / "clean"))
    run_cli(clean, "index", str(m), "--no-progress")
    assert _status_without_times(env) == _status_without_times(clean)
    for q in ("object:person", "object:car", "object:bicycle -object:car"):
        for level in ("shot", "episode", "programme"):
            a = json.loads(run_cli(env, "search", q, "--level", level, "--json").stdout)
            b = json.loads(run_cli(clean, "search", q, "--level", level, "--json").stdout)
            # The next-page cursor names the store's write version, which counts writes: two
            # runs sharing the work write more often than one. Hits and totals must be equal.
            for page in (a, b):
                page.pop("next_cursor")
            assert a == b, (q, level)
    assert dump(Path(env["TVINDEX_DATA_DIR"]) / "catalogue.sqlite") == \
        dump(Path(clean["TVINDEX_DATA_DIR"]) / "catalogue.sqlite")


def test_resume_hashes_only_changed_files(tmp_path, env, video_dir, capsys, monkeypatch):
    """The fingerprint cache: an unchanged file is not hashed again on resume; a file
    rewritten with the same size (new mtime) is, and its episode is re-indexed."""
    from indexer import fingerprints

    hashed: list[str] = []
    real = fingerprints.content_fingerprint

    def spy(episode):
        hashed.append(episode.id)
        return real(episode)

    monkeypatch.setattr(fingerprints, "content_fingerprint", spy)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    data = (video_dir / "bikes.mp4").read_bytes()
    a.write_bytes(data)
    b.write_bytes(data)
    m = write_manifest(tmp_path, [f"A,a1,{a},0,3", f"B,b1,{b},0,3"])
    assert main(["index", str(m), "--no-progress"]) == 0
    assert "indexed 2, unchanged 0, failed 0" in capsys.readouterr().out
    assert sorted(hashed) == ["a1", "b1"]
    assert (Path(env["TVINDEX_DATA_DIR"]) / "fingerprints.sqlite").is_file()

    hashed.clear()
    assert main(["index", str(m), "--no-progress"]) == 0
    assert "indexed 0, unchanged 2, failed 0" in capsys.readouterr().out
    assert hashed == []

    st = b.stat()  # same size, one byte of the first 4 MiB changed, a new mtime
    with open(b, "r+b") as f:
        f.seek(len(data) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert b.stat().st_size == st.st_size
    hashed.clear()
    assert main(["index", str(m), "--no-progress"]) == 0
    assert "indexed 1, unchanged 1, failed 0" in capsys.readouterr().out
    assert hashed == ["b1"]


def _every_episode_fails_setup(tmp_path, env, video_dir, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bikes, vtest = video_dir / "bikes.mp4", video_dir / "vtest.avi"
    m = write_manifest(tmp_path, [f"Bikes,b1,{bikes},0,5.48", f"Bikes,b2,{bikes},5.48,10",
                                  f"Plaza,v1,{vtest},0,10", f"Plaza,v2,{vtest},10,20"])
    assert main(["index", str(m), "--no-progress"]) == 0
    return m, Path(env["TVINDEX_DATA_DIR"]) / "catalogue.sqlite"


def test_a_setting_that_fails_every_episode_keeps_the_previous_tags(tmp_path, env, video_dir,
                                                                    capsys, monkeypatch):
    """`sampling.every_s: .inf` (settings refuse it now; any broken setting could do the
    same) makes every episode fail: the run stops before marking any of them failed."""
    import math

    from indexer.frame_tagging import choose_embedder
    from indexer.indexing import IndexAborted, run_index
    from indexer.taggers import taggers_from_settings
    from tvindex.settings import load_settings

    m, db = _every_episode_fails_setup(tmp_path, env, video_dir, monkeypatch)
    capsys.readouterr()
    before = dump(db)
    settings = load_settings(None, {})
    broken = settings.sampling.model_copy(update={"every_s": math.inf})  # not validated
    taggers = taggers_from_settings(settings)
    from indexer.catalogue import load_catalogue

    with SqliteStore(db) as store, pytest.raises(IndexAborted) as err:
        run_index(load_catalogue(m), store, taggers, broken, settings.aggregation,
                  embedder=choose_embedder(taggers, settings.taggers.embedding),
                  progress=False)
    assert str(err.value).startswith("every episode fails with: no frames could be sampled")
    assert "nothing was marked failed and their previous tags are kept" in str(err.value)
    assert dump(db) == before


def test_index_cli_stops_with_exit_2_when_every_episode_fails(tmp_path, env, video_dir,
                                                             capsys, monkeypatch):
    """The same through the CLI, with the sampler finding no frame in any episode (what
    `every_s: .inf` did): one `tvindex: error:` line, exit status 2, the tags unchanged."""
    from indexer.media import sampling

    m, db = _every_episode_fails_setup(tmp_path, env, video_dir, monkeypatch)
    capsys.readouterr()
    before = dump(db)
    monkeypatch.setattr(sampling, "_sample_times", lambda start, end, every_s: iter(()))
    assert main(["index", str(m), "--force", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    head = ("tvindex: error: every episode fails with: no frames could be sampled in 0.0-5.5 s "
            "(tried: ")
    assert err[-1].startswith(head)
    # Decode workers finish in any order: the three episodes tried, whichever first.
    assert sorted(err[-1][len(head):].split(";")[0].split(", ")) == ["b1", "b2", "v1"]
    assert "Traceback" not in "\n".join(err)
    assert dump(db) == before
