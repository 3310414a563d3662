"""Damaged vector folders (issue 14, item 2): a FAISS file truncated, deleted or overwritten
with random bytes of the same size, and a ``state.json`` that is not JSON or has fields of the
wrong type. Each gives the documented outcome:

- ``tvindex vectors status`` exits 1 and names the damaged level and why (text and ``--json``);
- ``tvindex similar shot`` exits 2 with one line ``tvindex: error: the shot vector index is
  damaged (...); run tvindex vectors rebuild`` (never an empty answer);
- the web server answers 503 on the similar-shot routes (and picture queries), paths not shown;
- ``tvindex vectors sync`` (and ``tvindex index``, which syncs after every run) rebuilds the
  damaged level; after that every ``similar`` answer equals a clean rebuild's.

The catalogue is real (SqliteStore, planted embeddings, as in tests/test_recommend.py); the
command line runs in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_recommend import DIM, MODEL, tags_for
from test_store import OBJ, SCN

from search.backends.sqlite.store import SqliteStore
from search.recommend import Recommender
from search.vector_catalogue import LEVELS, VectorCatalogue
from tvindex.core.records import EpisodeRecord, ProgrammeRecord
from tvindex.settings import load_settings
from webui import create_app

LAYOUT = {"cooking": ["c1", "c2", "c3"], "sport": ["s1", "s2"], "news": ["n1"]}
SHOTS = [f"{e}@{i}" for eps in LAYOUT.values() for e in eps for i in range(4)]
DAMAGE = ["truncated", "deleted", "random-same-size"]
STATE_DAMAGE = ["invalid-json", "wrong-types"]


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args, "--data-dir",
                           str(data_dir)], capture_output=True, text=True, timeout=120,
                          check=False, env=env)


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    """A catalogue of 6 episodes (24 shots) with embeddings, its vectors synced."""
    data = tmp_path / "data"
    data.mkdir()
    store = SqliteStore(data / "catalogue.sqlite", top_k=0)
    store.upsert_catalogue(
        [ProgrammeRecord(p, p.title(), genre="g") for p in LAYOUT],
        [EpisodeRecord(e, p, e.upper(), str(tmp_path / f"{e}.mp4"))
         for p, eps in LAYOUT.items() for e in eps])
    store.register_label_sets([OBJ, SCN])
    rng = np.random.default_rng(0)
    for p, eps in LAYOUT.items():
        for e in eps:
            store.write_episode(tags_for(e, p, 4, rng))
    VectorCatalogue(store, data / "vectors").sync()
    store.close()
    return data


def damage_shot_file(data: Path, how: str) -> tuple[Path, str]:
    """Damage the shot level's FAISS file; returns it and the documented reason."""
    (path,) = (data / "vectors" / "shot").glob("index-*.faiss")
    size = path.stat().st_size
    if how == "truncated":
        with open(path, "r+b") as f:
            f.truncate(size // 2)
        return path, f"{path}: {size // 2} bytes, {size} recorded (truncated or overwritten)"
    if how == "deleted":
        path.unlink()
        return path, f"{path}: missing"
    path.write_bytes(np.random.default_rng(1).bytes(size))
    return path, (f"{path}: its content differs from the recorded sha256 (overwritten or "
                  "corrupted)")


def damage_state(data: Path, how: str) -> str:
    """Damage state.json; returns the documented reason (every level)."""
    path = data / "vectors" / "state.json"
    if how == "invalid-json":
        path.write_text(path.read_text()[:40])
        return f"{path}: not valid JSON ("
    state = json.loads(path.read_text())
    path.write_text(json.dumps(state | {"dim": "8", "episodes": ["c1"], "files": 5}))
    return f"{path}: 'dim' is not a non-negative integer"


def similar_shot(data: Path, shot: str = "c1@0") -> subprocess.CompletedProcess:
    return cli(data, "similar", "shot", shot, "--limit", "10", "--json")


def clean_answers(data: Path, tmp_path: Path) -> dict[str, list]:
    """Every shot's 10 nearest shots, and every level's ids, from a clean rebuild."""
    with SqliteStore(data / "catalogue.sqlite", top_k=0) as store:
        clean = VectorCatalogue(store, tmp_path / "clean")
        clean.rebuild()
        return answers(store, clean)


def answers(store: SqliteStore, vectors: VectorCatalogue) -> dict[str, list]:
    rec = Recommender(store, vectors)
    out: dict[str, list] = {level: vectors.index(level).ids() for level in LEVELS}
    for shot in SHOTS:
        out[shot] = [h.to_dict() for h in rec.similar_shots(shot, 10)]
    return out


def assert_repaired_like_a_clean_rebuild(data: Path, tmp_path: Path) -> None:
    status = cli(data, "vectors", "status", "--json")
    assert status.returncode == 0, status.stderr
    out = json.loads(status.stdout)
    assert out["damaged"] == {} and out["current"] is True
    assert {lv: v["status"] for lv, v in out["levels"].items()} == dict.fromkeys(LEVELS, "ok")
    assert {lv: v["count"] for lv, v in out["levels"].items()} == {
        "shot": 24, "episode": 6, "programme": 3}
    with SqliteStore(data / "catalogue.sqlite", top_k=0) as store:
        repaired = answers(store, VectorCatalogue(store, data / "vectors"))
    assert repaired == clean_answers(data, tmp_path)
    proc = similar_shot(data)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == repaired["c1@0"]


def assert_documented_damage(data: Path, damaged: dict[str, str], prefix: bool = False
                             ) -> None:
    """``vectors status`` (JSON and text) and ``similar shot`` on a damaged folder."""
    status = cli(data, "vectors", "status", "--json")
    assert status.returncode == 1, status.stderr
    assert "Traceback" not in status.stderr
    out = json.loads(status.stdout)
    assert out["current"] is False and set(out["damaged"]) == set(damaged)
    for level, reason in damaged.items():
        got = out["damaged"][level]
        assert got.startswith(reason) if prefix else got == reason
        assert out["levels"][level] == {"count": None, "kind": None, "status": "damaged",
                                        "reason": got}
    text = cli(data, "vectors", "status")
    assert text.returncode == 1
    assert "DAMAGED (run: tvindex vectors sync)" in text.stdout.splitlines()[0]
    for level in damaged:
        assert f"  {level:<10} damaged: {out['damaged'][level]}" in text.stdout.splitlines()
    proc = similar_shot(data)
    assert proc.returncode == 2 and proc.stdout == ""
    message = (f"the shot vector index is damaged ({out['damaged']['shot']}); run tvindex "
               "vectors rebuild")
    # With --json the error is one JSON object on stderr (issue 16); without, one line.
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1
    assert json.loads(proc.stderr) == {"error": {"code": "storage", "message": message,
                                                 "exit_status": 2}}
    proc = cli(data, "similar", "shot", "c1@0", "--limit", "10")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"tvindex: error: {message}\n"


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_shot_file_is_reported_and_sync_repairs(data_dir, tmp_path, how):
    _, reason = damage_shot_file(data_dir, how)
    assert_documented_damage(data_dir, {"shot": reason})
    proc = cli(data_dir, "vectors", "sync")
    assert proc.returncode == 0, proc.stderr
    assert f"  repaired the damaged shot index ({reason})" in proc.stdout.splitlines()
    assert "Traceback" not in proc.stderr
    assert_repaired_like_a_clean_rebuild(data_dir, tmp_path)


@pytest.mark.parametrize("how", STATE_DAMAGE)
def test_damaged_state_is_reported_and_sync_repairs(data_dir, tmp_path, how):
    reason = damage_state(data_dir, how)
    assert_documented_damage(data_dir, dict.fromkeys(LEVELS, reason),
                             prefix=how == "invalid-json")
    proc = cli(data_dir, "vectors", "sync", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rebuilt"] is True and set(report["repaired"]) == set(LEVELS)
    assert all(why.startswith(reason) for why in report["repaired"].values())
    assert_repaired_like_a_clean_rebuild(data_dir, tmp_path)


def test_index_run_repairs_a_damaged_level(data_dir, tmp_path):
    """``tvindex index`` syncs after its run, and the sync rebuilds the damaged level (here
    the run itself only fails one unreadable file, so it needs no model)."""
    _, reason = damage_shot_file(data_dir, "random-same-size")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(2).bytes(4000))
    manifest = tmp_path / "catalogue.csv"
    manifest.write_text(f"programme,episode_id,media_path\ncooking,zz,{noise}\n")
    env = dict(os.environ, TVINDEX__TAGGERS__ACTIVE="[]")
    proc = cli(data_dir, "index", str(manifest), "--no-progress", env=env)
    assert proc.returncode == 1, proc.stderr  # 1: an episode failed (the noise file)
    assert "failed 1;" in proc.stdout and "vectors: 24 shots, 6 episodes, 3 programmes" \
        in proc.stdout
    assert (f"WARNING search.vector_catalogue: the shot vector index is damaged ({reason}): "
            "rebuilding it from the store") in proc.stderr.splitlines()
    assert_repaired_like_a_clean_rebuild(data_dir, tmp_path)


class PlantedEmbedder:
    """Stands in for the embedding tagger of the planted catalogue: every picture embeds to
    the "cooking" direction."""

    def identity(self) -> str:
        return MODEL

    def predict_with_embeddings(self, frames):
        out = np.zeros((len(frames), DIM), np.float32)
        out[:, 0] = 1.0
        return {}, out


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("how", ["truncated", "invalid-json"])
def test_web_answers_503_on_a_damaged_shot_level(data_dir, how):
    if how == "invalid-json":
        damage_state(data_dir, how)
    else:
        damage_shot_file(data_dir, how)
    settings = load_settings(None, {"paths.data_dir": str(data_dir)}, environ={})
    with SqliteStore(data_dir / "catalogue.sqlite", top_k=0) as store:
        app = create_app(settings, store)
        client = app.test_client()
        message = "the shot vector index is damaged; run tvindex vectors rebuild"

        def want(path: str) -> dict:  # an RFC 9457 problem, with the deprecated error object
            return {"type": "https://tvindex.invalid/problems/vectors_damaged",
                    "title": "Vector index damaged", "status": 503, "detail": message,
                    "code": "vectors_damaged", "instance": path,
                    "error": {"status": 503, "message": message}}

        for path, resp in (("/api/v1/shots/c1@0/similar",
                            client.get("/api/v1/shots/c1@0/similar")),
                           ("/api/v1/similar", client.post("/api/v1/similar",
                                                           json={"shot": "c1@0"}))):
            assert resp.status_code == 503 and resp.get_json() == want(path)
            assert resp.mimetype == "application/problem+json"
        # a picture query (the app's recommender with a stand-in embedder)
        app.extensions["tvindex"].use_recommender(Recommender(
            store, VectorCatalogue.from_settings(store, settings), embedder=PlantedEmbedder()))
        resp = client.post("/api/v1/similar", data={"image": (io.BytesIO(png()), "a.png")},
                           content_type="multipart/form-data")
        assert resp.status_code == 503 and resp.get_json() == want("/api/v1/similar")
        # programmes and episodes do not use the FAISS files: they still answer
        assert client.get("/api/v1/episodes/c1/similar").status_code == 200
        # after a sync the same routes answer like a clean index
        VectorCatalogue.from_settings(store, settings).sync()
        resp = client.get("/api/v1/shots/c1@0/similar?limit=10")
        assert resp.status_code == 200
        assert [i["id"] for i in resp.get_json()["items"]] == [
            h.id for h in Recommender(store, VectorCatalogue(store, data_dir / "vectors"))
            .similar_shots("c1@0", 10)]
