"""Hostile storage: a damaged or 0-byte catalogue, a read-only data directory (or replica), a
data directory that is a file, a full disk. Each case builds its own input under tmp_path and
asserts the documented outcome: the real CLI's one ``tvindex: error:`` line and exit status 2
(or a normal answer where reading is allowed), the real web app's JSON 503; never a
traceback, and nothing already written is lost.

Making a folder read-only or a disk full for root (CI runs as root, whom permission bits do
not stop) needs a mount: a read-only bind mount, or a small tmpfs; the cases skip with the
reason when this process cannot mount (and use chmod when it is not root).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from search.backends.sqlite.store import SCHEMA_VERSION, SqliteStore
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from tvindex.core.store import CatalogueCorrupt, CatalogueReadOnly

REPO = Path(__file__).resolve().parents[2]
OBJ = LabelSet("coco80", "sigmoid", ("person", "dog", "car", "bicycle"))
PAGE = 4096
DAMAGED = re.compile(
    r"tvindex: error: (?P<path>\S+catalogue\.sqlite): the catalogue is damaged \((?P<why>.+)\); "
    r"restore it from a backup, or re-index into a new data directory "
    r"\(--data-dir or paths\.data_dir\)$")
READ_ONLY = re.compile(
    r"tvindex: error: \S+catalogue\.sqlite: the catalogue is read-only \((?P<why>.+)\); "
    r"status, search, labels, similar and serve can read it, but index and vectors "
    r"sync/rebuild need a writable data directory$")


# --- building catalogues ----------------------------------------------------------------
def build_catalogue(path: Path, n_episodes: int = 40, n_segments: int = 12) -> None:
    """A catalogue written through SqliteStore: programmes, episodes with segments, thumbnails
    and embeddings (seeded, so its pages lie the same way on every run)."""
    rng = np.random.default_rng(0)
    programmes = [ProgrammeRecord(f"p{i}", f"Programme {i}") for i in range(4)]
    episodes = [EpisodeRecord(f"e{i:03d}", f"p{i % 4}", f"Episode {i}", f"/media/e{i}.mp4")
                for i in range(n_episodes)]

    def unit() -> np.ndarray:
        v = rng.standard_normal(8).astype(np.float32)
        return v / np.linalg.norm(v)

    with SqliteStore(path) as store:
        store.upsert_catalogue(programmes, episodes)
        store.register_label_sets([OBJ])
        for e in episodes:
            segments = [SegmentTags(j, j * 5.0, j * 5.0 + 5, j * 5.0 + 2.5,
                                    {"coco80": aggregate(rng.random((3, 4)).astype(np.float32),
                                                         0.5)},
                                    thumbnail=rng.bytes(1500), embedding=unit())
                        for j in range(n_segments)]
            frames = rng.random((3 * n_segments, 4)).astype(np.float32)
            store.write_episode(EpisodeTags(e.id, f"fp-{e.id}", "v1", n_segments * 5.0,
                                            segments, {"coco80": aggregate(frames, 0.5)},
                                            "shots", unit(), "m1"))


def overwrite_middle_pages(path: Path, n: int = 20) -> None:
    pages = path.stat().st_size // PAGE
    first = pages // 2 - n // 2
    with open(path, "r+b") as f:
        f.seek(first * PAGE)
        f.write(np.random.default_rng(1).bytes(n * PAGE))


def dump(path: Path) -> dict[str, list]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f"SELECT * FROM {t}").fetchall() for t in sorted(tables)}
    finally:
        db.close()


@pytest.fixture(scope="module")
def catalogue_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalogue") / "catalogue.sqlite"
    build_catalogue(path)
    return path


@pytest.fixture()
def data_dir(tmp_path: Path, catalogue_file: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    shutil.copy(catalogue_file, d / "catalogue.sqlite")
    return d


# --- the command line -------------------------------------------------------------------
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TVINDEX")}


def tvindex(*args: str, extra_env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args], cwd=REPO,
                          env=env() | (extra_env or {}), capture_output=True, text=True,
                          timeout=timeout, check=False)


def one_error(proc: subprocess.CompletedProcess, pattern: re.Pattern | str,
              status: int = 2) -> re.Match:
    """Exit ``status``, no traceback, and exactly one ``tvindex:`` line on stderr, which
    matches ``pattern``."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("tvindex:")]
    assert len(lines) == 1, proc.stderr
    match = re.fullmatch(pattern, lines[0])
    assert match, lines[0]
    return match


def ok(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture()
def index_env(shared_dir: Path, model_dir: Path, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """What `tvindex index` needs (the small TFLite detector), and a one-episode manifest."""
    video = shared_dir / "media" / "video" / "bikes.mp4"
    if not video.exists():
        pytest.skip(f"{video} is absent")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"programme,episode_id,media_path\np0,e000,{video}\n")
    return ({"TVINDEX_MODEL_DIR": str(model_dir), "TVINDEX_SHARED_DIR": str(shared_dir),
             "TVINDEX__TAGGERS__ACTIVE": "[tflite-detector]",
             "TVINDEX__SAMPLING__MODE": "interval", "TVINDEX__SAMPLING__EVERY_S": "2"},
            manifest)


# --- a damaged catalogue ----------------------------------------------------------------
def test_damaged_catalogue_is_one_clear_error(data_dir: Path):
    db = data_dir / "catalogue.sqlite"
    overwrite_middle_pages(db)
    check = one_error(tvindex("status", "--check", "--data-dir", str(data_dir)), DAMAGED)
    assert check["path"] == str(db) and "page" in check["why"].lower()
    # A query that reaches a damaged page is the same error, not a traceback or a wrong answer.
    one_error(tvindex("search", "object:person", "--data-dir", str(data_dir)), DAMAGED)


def test_damaged_catalogue_is_never_written(data_dir: Path, index_env):
    """`index` checks the whole file before its first write: a damaged catalogue is neither
    reported 'unchanged' nor written into (`--force` does not end in IntegrityError)."""
    extra, manifest = index_env
    db = data_dir / "catalogue.sqlite"
    overwrite_middle_pages(db)
    before = db.read_bytes()
    for force in ((), ("--force",)):
        proc = tvindex("index", str(manifest), "--data-dir", str(data_dir), "--no-progress",
                       *force, extra_env=extra)
        one_error(proc, DAMAGED)
        assert "unchanged" not in proc.stdout
    assert db.read_bytes() == before


def test_zero_byte_catalogue_is_refused_not_emptied(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "catalogue.sqlite").write_bytes(b"")
    for command in (("status",), ("search", "object:dog"), ("labels",), ("vectors", "sync")):
        m = one_error(tvindex(*command, "--data-dir", str(data)), DAMAGED)
        assert m["why"] == "an empty file of 0 bytes, not a catalogue"
    assert (data / "catalogue.sqlite").stat().st_size == 0  # left as found, for the operator


def test_foreign_file_is_refused(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "catalogue.sqlite").write_text("programme,episode_id\n" * 100)
    m = one_error(tvindex("status", "--data-dir", str(data)), DAMAGED)
    assert m["why"] == "not a SQLite database"


def test_health_is_503_for_a_damaged_catalogue(data_dir: Path):
    from tvindex.settings import load_settings
    from webui import create_app
    from webui.app import close_app

    settings = load_settings(None, {"paths.data_dir": str(data_dir)})
    app = create_app(settings)
    try:
        assert app.test_client().get("/api/v1/health").status_code == 200
    finally:
        close_app(app)
    overwrite_middle_pages(data_dir / "catalogue.sqlite")
    app = create_app(settings)
    try:
        client = app.test_client()
        resp = client.get("/api/v1/health")
        assert resp.status_code == 503
        body = resp.get_json()
        assert body["status"] == "unavailable" and body["error"]["status"] == 503
        assert str(data_dir) not in resp.get_data(as_text=True)
        # A search that reaches the damage: 503 with the JSON error shape, no internals.
        resp = client.get("/api/v1/search?q=object:person")
        assert resp.status_code == 503
        assert resp.get_json()["error"]["message"].startswith("the catalogue is damaged")
        assert str(data_dir) not in resp.get_data(as_text=True)
    finally:
        close_app(app)


def test_health_is_503_when_the_catalogue_is_swapped_for_an_empty_file(data_dir: Path):
    from tvindex.settings import load_settings
    from webui import create_app
    from webui.app import close_app

    app = create_app(load_settings(None, {"paths.data_dir": str(data_dir)}))
    try:
        client = app.test_client()
        assert client.get("/api/v1/health").status_code == 200
        (data_dir / "catalogue.sqlite").write_bytes(b"")
        resp = client.get("/api/v1/health")
        assert resp.status_code == 503 and resp.get_json()["status"] == "unavailable"
    finally:
        close_app(app)


# --- a read-only data directory ---------------------------------------------------------
@contextlib.contextmanager
def read_only(folder: Path, mount_at: Path) -> Iterator[Path]:
    """``folder`` seen read-only: a read-only bind mount at ``mount_at`` when root, else the
    folder itself with its write permissions taken away."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield folder
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    mount_at.mkdir()
    bound = subprocess.run(["mount", "--bind", str(folder), str(mount_at)],
                           capture_output=True, text=True, check=False)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount as root here ({bound.stderr.strip()}): root ignores "
                    "permission bits, so a read-only folder needs a read-only mount")
    try:
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(mount_at)],
                                 capture_output=True, text=True, check=False)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only ({remount.stderr.strip()})")
        yield mount_at
    finally:
        subprocess.run(["umount", str(mount_at)], check=False)


def assert_cannot_write(folder: Path) -> None:
    with pytest.raises(OSError):
        (folder / "probe").write_text("x")


def test_read_only_data_dir_serves_reads_and_refuses_writes(data_dir: Path, tmp_path: Path):
    ok(tvindex("vectors", "sync", "--data-dir", str(data_dir)))  # a replica with its vectors
    before = dump(data_dir / "catalogue.sqlite")
    files = sorted(os.listdir(data_dir))
    with read_only(data_dir, tmp_path / "ro") as ro:
        assert_cannot_write(ro)
        status = ok(tvindex("status", "--check", "--data-dir", str(ro)))
        assert "40 episodes: 40 indexed, 0 failed, 0 pending" in status
        assert "catalogue opened read-only" in status
        assert "shot(s) match" in ok(tvindex("search", "object:dog", "--data-dir", str(ro)))
        assert "4 label(s)" in ok(tvindex("labels", "--data-dir", str(ro)))
        assert "e0" in ok(tvindex("similar", "episode", "e001", "--data-dir", str(ro)))
        assert "e0" in ok(tvindex("similar", "shot", "e001@1", "--data-dir", str(ro)))
        assert "current" in ok(tvindex("vectors", "status", "--data-dir", str(ro)))
        for action in ("sync", "rebuild"):
            one_error(tvindex("vectors", action, "--data-dir", str(ro)),
                      r"tvindex: error: .*read-only.*writable data directory.*")

        # The web app (what `serve` runs) answers from the read-only catalogue.
        from tvindex.settings import load_settings
        from webui import create_app
        from webui.app import close_app

        app = create_app(load_settings(None, {"paths.data_dir": str(ro)}))
        try:
            client = app.test_client()
            assert client.get("/api/v1/health").get_json()["status"] == "ok"
            assert client.get("/api/v1/search?q=object:dog").status_code == 200
        finally:
            close_app(app)
        assert sorted(os.listdir(ro)) == files  # nothing created
    assert dump(data_dir / "catalogue.sqlite") == before


def test_read_only_data_dir_refuses_index(data_dir: Path, tmp_path: Path, index_env):
    extra, manifest = index_env
    before = dump(data_dir / "catalogue.sqlite")
    with read_only(data_dir, tmp_path / "ro") as ro:
        proc = tvindex("index", str(manifest), "--data-dir", str(ro), "--no-progress",
                       extra_env=extra)
        m = one_error(proc, READ_ONLY)
        assert "not writable" in m["why"] or "read-only" in m["why"]
    assert dump(data_dir / "catalogue.sqlite") == before


def _undo_migrations_after(version: int) -> list[str]:
    """Statements that take a current catalogue back to ``version``: each later migration's
    tables dropped and its added columns removed, newest first."""
    from search.backends.sqlite.schema import MIGRATIONS

    undo: list[str] = []
    for v in sorted((v for v in MIGRATIONS if v > version), reverse=True):
        for statement in reversed(MIGRATIONS[v].split(";")):
            words = statement.split()
            if words[:2] == ["CREATE", "TABLE"] or words[:3] == ["CREATE", "VIRTUAL", "TABLE"]:
                name = words[words.index("TABLE") + 1].split("(")[0]
                undo.append(f"DROP TABLE IF EXISTS {name}")
            elif words[:2] == ["ALTER", "TABLE"] and words[3:5] == ["ADD", "COLUMN"]:
                undo.append(f"ALTER TABLE {words[2]} DROP COLUMN {words[5]}")
    return undo


def test_read_only_catalogue_that_needs_a_migration_says_so(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    db_path = data / "catalogue.sqlite"
    build_catalogue(db_path, n_episodes=2, n_segments=2)
    db = sqlite3.connect(db_path)  # make it a schema-1 catalogue, as an older tvindex left it
    for statement in _undo_migrations_after(1):
        db.execute(statement)
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.commit()
    db.close()
    with read_only(data, tmp_path / "ro") as ro:
        m = one_error(tvindex("status", "--data-dir", str(ro)), READ_ONLY)
        assert f"schema version 1 must be migrated to {SCHEMA_VERSION}" in m["why"]
    assert "2 episodes" in ok(tvindex("status", "--data-dir", str(data)))  # migrated now


def test_read_only_open_without_a_cli(data_dir: Path, tmp_path: Path):
    """The store itself: reads work read-only, every write is CatalogueReadOnly."""
    with read_only(data_dir, tmp_path / "ro") as ro, SqliteStore(ro / "catalogue.sqlite") as s:
        assert s.read_only and len(s.episode_states()) == 40
        s.check(thorough=True)
        with pytest.raises(CatalogueReadOnly):
            s.request_reindex("e001")


# --- a data directory that is a file ----------------------------------------------------
def test_data_dir_that_is_a_file(tmp_path: Path):
    f = tmp_path / "data"
    f.write_text("not a folder")
    for command in (("status",), ("search", "object:dog"), ("vectors", "sync"),
                    ("serve", "--port", "0")):
        one_error(tvindex(*command, "--data-dir", str(f)),
                  rf"tvindex: error: {re.escape(str(f))}: the data directory is a file, not a "
                  r"folder; point paths\.data_dir \(--data-dir\) at a folder")
    one_error(tvindex("status", "--data-dir", str(f / "sub")),
              rf"tvindex: error: {re.escape(str(f / 'sub'))}: cannot create the data directory "
              r"\(a part of its path is a file\); point paths\.data_dir \(--data-dir\) at a folder")
    assert f.read_text() == "not a folder"


def test_missing_catalogue_in_a_read_only_dir_is_not_created(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with read_only(empty, tmp_path / "ro") as ro:
        one_error(tvindex("status", "--data-dir", str(ro)),
                  rf"tvindex: error: {re.escape(str(ro / 'catalogue.sqlite'))}: no catalogue "
                  rf"here, and {re.escape(str(ro))} is not writable; index into a writable data "
                  r"directory \(--data-dir or paths\.data_dir\)")


# --- a full disk ------------------------------------------------------------------------
@contextlib.contextmanager
def small_disk(at: Path, size: str = "3m") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a small tmpfs, and mounting one needs root")
    at.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield at
    finally:
        subprocess.run(["umount", "-l", str(at)], check=False)


def fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


FULL = (r"tvindex: error: .*(the disk is full|No space left on device).*free some space and "
        r"run again.*")


@contextlib.contextmanager
def full_disk(tmp_path: Path, catalogue_file: Path) -> Iterator[Path]:
    """A data directory holding a copy of the catalogue on a tmpfs filled to the last byte.
    A store stays open meanwhile, as a running server's would: its -wal/-shm files exist, so
    commands can still open the catalogue and fail where they write."""
    with small_disk(tmp_path / "disk") as disk:
        data = disk / "data"
        data.mkdir()
        shutil.copy(catalogue_file, data / "catalogue.sqlite")
        with SqliteStore(data / "catalogue.sqlite") as holder:
            assert len(holder.episode_states()) == 40
            fill(disk)
            yield data
            (disk / "filler").unlink()


def test_full_disk_when_opening(tmp_path: Path, catalogue_file: Path):
    with small_disk(tmp_path / "disk") as disk:
        data = disk / "data"
        data.mkdir()
        shutil.copy(catalogue_file, data / "catalogue.sqlite")
        fill(disk)  # not even SQLite's -shm file fits
        one_error(tvindex("status", "--data-dir", str(data)), FULL)
        (disk / "filler").unlink()
        assert "40 episodes" in ok(tvindex("status", "--check", "--data-dir", str(data)))


def test_full_disk_during_vector_writes(tmp_path: Path, catalogue_file: Path):
    with full_disk(tmp_path, catalogue_file) as data:
        before = dump(data / "catalogue.sqlite")
        one_error(tvindex("vectors", "rebuild", "--data-dir", str(data)), FULL)
        assert dump(data / "catalogue.sqlite") == before
        assert "40 episodes" in ok(tvindex("status", "--check", "--data-dir", str(data)))


def test_full_disk_during_catalogue_writes(tmp_path: Path, catalogue_file: Path, index_env):
    extra, manifest = index_env
    with full_disk(tmp_path, catalogue_file) as data:
        before = dump(data / "catalogue.sqlite")
        one_error(tvindex("index", str(manifest), "--data-dir", str(data), "--no-progress",
                          "--force", extra_env=extra), FULL)
        assert dump(data / "catalogue.sqlite") == before  # the failed write was rolled back
        assert "40 episodes: 40 indexed" in ok(tvindex("status", "--check", "--data-dir",
                                                       str(data)))


def test_store_errors_are_the_stores_own(data_dir: Path):
    """No sqlite3 exception leaves the store: a damaged page is CatalogueCorrupt."""
    overwrite_middle_pages(data_dir / "catalogue.sqlite")
    with SqliteStore(data_dir / "catalogue.sqlite") as s:
        with pytest.raises(CatalogueCorrupt):
            s.check(thorough=True)
        with pytest.raises(CatalogueCorrupt):  # remembered: never written into
            s.request_reindex("e001")
