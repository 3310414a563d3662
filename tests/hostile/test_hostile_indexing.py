"""Hostile indexing: a run that holds a claim and dies, a damaged fingerprint cache and claim
file, and indexed media swapped for broken files. Real CLI, real store, real media."""

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
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tvindex.cli", *args]


@pytest.fixture()
def env(shared_dir: Path, tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, TVINDEX_MODEL_DIR=str(shared_dir / "models"),
                TVINDEX_SHARED_DIR=str(shared_dir), TVINDEX_DATA_DIR=str(tmp_path / "data"),
                TVINDEX__TAGGERS__ACTIVE="[tflite-detector]",
                TVINDEX__SAMPLING__MODE="interval", TVINDEX__SAMPLING__EVERY_S="1")


def manifest(tmp_path: Path, rows: list[str]) -> Path:
    m = tmp_path / "catalogue.csv"
    m.write_text("programme,episode_id,media_path,start_s,end_s\n" + "\n".join(rows) + "\n")
    return m


def index(env: dict[str, str], m: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cli("index", str(m), "--no-progress", "--json"), env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_claim_of_a_killed_run_expires(tmp_path, env, video_dir):
    """A process holds b1's claim: the run tags b2, waits for b1, and when the holder is
    killed (-9, no chance to clean up) it takes b1 and tags it."""
    bikes = video_dir / "bikes.mp4"
    m = manifest(tmp_path, [f"Bikes,b1,{bikes},0,3", f"Bikes,b2,{bikes},3,10"])
    claims = Path(env["TVINDEX_DATA_DIR"]) / "claims"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         ("import sys, time; from indexer.claims import EpisodeClaims; "
          f"c = EpisodeClaims({str(claims)!r}).claim('b1'); assert c is not None; "
          "print('held', flush=True); time.sleep(300)")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    run = None
    try:
        assert holder.stdout.readline().strip() == "held"
        run = subprocess.Popen(cli("index", str(m), "--no-progress", "--json"), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        db = Path(env["TVINDEX_DATA_DIR"]) / "catalogue.sqlite"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # b2 done: the run now waits for b1
            try:  # read-only: never create the catalogue before the run does
                if db.exists() and sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
                        "SELECT status FROM episodes WHERE id='b2'").fetchone() == ("indexed",):
                    break
            except sqlite3.Error:
                pass
            assert run.poll() is None, run.communicate()
            time.sleep(0.05)
        else:
            pytest.fail("b2 was not indexed in time")
        time.sleep(0.5)
        assert run.poll() is None, "the run did not wait for the held episode"
        holder.send_signal(signal.SIGKILL)
        out, err = run.communicate(timeout=120)
    finally:
        for p in (holder, run):
            if p is not None and p.poll() is None:
                p.kill()
    assert run.returncode == 0, err
    assert "Traceback" not in err
    report = json.loads(out)
    assert report["indexed_ids"] == ["b2", "b1"] and report["by_other_run"] == []


def test_a_damaged_fingerprint_cache_and_claim_file_are_rebuilt(tmp_path, env, video_dir):
    bikes = video_dir / "bikes.mp4"
    m = manifest(tmp_path, [f"Bikes,b1,{bikes},0,3"])
    assert index(env, m).returncode == 0
    data = Path(env["TVINDEX_DATA_DIR"])
    cache = data / "fingerprints.sqlite"
    cache.write_bytes(os.urandom(8192))  # not a database any more
    for f in (data / "claims").iterdir():
        f.write_bytes(b"\xff{not json")
    proc = index(env, m)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert report["skipped"] == 1 and report["indexed"] == 0 and report["hashed"] == 1
    proc = index(env, m)  # the rebuilt cache serves the next run
    assert proc.returncode == 0 and json.loads(proc.stdout)["hashed"] == 0
    # a damaged claim file does not stop a run that has to tag the episode
    for f in (data / "claims").iterdir():
        f.write_bytes(b"\x00" * 100)
    proc = subprocess.run(cli("index", str(m), "--no-progress", "--json", "--force"), env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and json.loads(proc.stdout)["indexed_ids"] == ["b1"]


def test_indexed_media_swapped_for_broken_files_is_marked_failed(tmp_path, env, video_dir,
                                                                bad_media):
    """Every episode fails, each the same way, but their media changed: that is about the
    media, so the run does not stop; they are marked failed (exit status 1)."""
    data = (video_dir / "bikes.mp4").read_bytes()
    files = [tmp_path / f"ep{i}.mp4" for i in range(3)]
    for f in files:
        f.write_bytes(data)
    m = manifest(tmp_path, [f"P,e{i},{f},0,2" for i, f in enumerate(files)])
    assert index(env, m).returncode == 0
    for f in files:  # the same broken content in each: the same failure reason
        f.write_text("this is not a video, just some text\n" * 20)
    proc = index(env, m)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert sorted(report["failed"]) == ["e0", "e1", "e2"]
    status = json.loads(subprocess.run(cli("status", "--json"), env=env, capture_output=True,
                                       text=True, timeout=120, check=True).stdout)
    assert {s["id"]: s["status"] for s in status} == {"e0": "failed", "e1": "failed",
                                                       "e2": "failed"}
