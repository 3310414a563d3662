"""The Ray engine (indexer.pipeline.ray_engine) on a local Ray cluster of two CPUs, as CI
runs it (``ray.init(num_cpus=2)``): the demo (its configuration and catalogue) indexed on
Ray equals the local engine's catalogue, row for row, and a second run resumes (nothing
tagged); a corrupt file fails only its episode, with the local engine's reason; the driver
builds no taggers (the actors describe theirs), stamps the real version and selects again
when the remembered one was wrong; actors with other models stop the job; Ray missing is one
clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_pipeline import dump_all, read_models, write_manifest

pytestmark = pytest.mark.media
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tvindex[ray]')")
WHEN = ("indexed_at", "seq")  # when a row was written: the rest must be equal


@pytest.fixture(scope="module")
def local_ray():
    # address="local": a cluster of its own, even where RAY_ADDRESS names another one.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def _settings(config: Path | None, env: dict[str, str], monkeypatch):
    from tvindex.settings import load_settings

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return load_settings(config, {})


def _both_engines(catalogue, settings, tmp_path: Path):
    """The catalogue indexed by the local engine (one decode worker) and on Ray, each into
    a SQLite store of its own: (local report, Ray report, local db, Ray db, index again)."""
    from indexer.claims import EpisodeClaims
    from indexer.fingerprints import FingerprintCache
    from indexer.pipeline.engine import index_catalogue
    from indexer.pipeline.models import Models
    from indexer.pipeline.ray_engine import index_on_ray
    from search.backends.sqlite.store import SqliteStore

    models = Models.from_settings(settings, tmp_path / "ray-data")
    batch = settings.taggers.batch_size
    local_db, ray_db = tmp_path / "local.sqlite", tmp_path / "ray.sqlite"
    with SqliteStore(local_db) as store:
        local = index_catalogue(catalogue, store, models, settings.sampling,
                                settings.aggregation, batch_size=batch, progress=False,
                                workers=1)

    def on_ray():
        with SqliteStore(ray_db) as store:
            return index_on_ray(catalogue, store, models, settings.sampling,
                                settings.aggregation, batch_size=batch, progress=False,
                                fingerprints=FingerprintCache(tmp_path / "fp.sqlite"),
                                claims=EpisodeClaims(tmp_path / "claims"))

    return local, on_ray(), local_db, ray_db, on_ray


def test_ray_on_the_demo_equals_the_local_engine_and_resumes(local_ray, shared_dir, tmp_path,
                                                              monkeypatch):
    from indexer.catalogue import load_catalogue

    # The demo as `make demo` runs it: its configuration (shots, 3 frames a shot), its
    # catalogue (11 episodes of the shared footage) and the two offline teachers.
    settings = _settings(REPO / "demo" / "config.yaml",
                         {"TVINDEX_MODEL_DIR": str(shared_dir / "models"),
                          "TVINDEX_SHARED_DIR": str(shared_dir),
                          "TVINDEX_DATA_DIR": str(tmp_path / "data")}, monkeypatch)
    assert settings.sampling.mode == "shots"
    catalogue = load_catalogue(REPO / "demo" / "catalogue.csv")
    local, on_ray, local_db, ray_db, again = _both_engines(catalogue, settings, tmp_path)
    episodes = sorted(e.id for e in catalogue.episodes)
    assert len(episodes) == 11
    assert sorted(on_ray.indexed) == sorted(local.indexed) == episodes
    assert not on_ray.failed and not local.failed
    assert on_ray.frames == local.frames > 0
    # Row for row, but for the order episodes were written in (Ray finishes them as its
    # decode tasks do: the store's write version, ``seq``, differs).
    assert dump_all(ray_db, WHEN) == dump_all(local_db, WHEN)
    assert read_models(ray_db) == read_models(local_db)

    # Resumable: the same fingerprints and versions, so nothing is tagged again.
    second = again()
    assert second.indexed == [] and sorted(second.skipped) == episodes
    assert second.frames == 0


def _small(tmp_path: Path, video_dir: Path, shared_dir: Path, monkeypatch,
           more: tuple[str, ...] = (), **env: str):
    """Two short episodes (and the manifest rows ``more``), the detector, a frame a second:
    (catalogue, settings)."""
    from indexer.catalogue import load_catalogue

    settings = _settings(None, {"TVINDEX_MODEL_DIR": str(shared_dir / "models"),
                                "TVINDEX_SHARED_DIR": str(shared_dir),
                                "TVINDEX_DATA_DIR": str(tmp_path / "data"),
                                "TVINDEX__TAGGERS__ACTIVE": "[tflite-detector]",
                                "TVINDEX__SAMPLING__MODE": "interval",
                                "TVINDEX__SAMPLING__EVERY_S": "1",
                                "TVINDEX__TAGGERS__BATCH_SIZE": "4", **env}, monkeypatch)
    m = write_manifest(tmp_path, [f"Bikes,b1,{video_dir / 'bikes.mp4'},0,5.48",
                                  f"Car,c1,{video_dir / 'carphone_pristine.mp4'},0,2", *more])
    return load_catalogue(m), settings


def test_on_ray_a_corrupt_file_fails_alone(local_ray, shared_dir, tmp_path, video_dir,
                                           bad_media, monkeypatch):
    catalogue, settings = _small(tmp_path, video_dir, shared_dir, monkeypatch,
                                 (f"Broken,trunc,{bad_media['truncated']},,",))
    local, on_ray, local_db, ray_db, _ = _both_engines(catalogue, settings, tmp_path)
    assert sorted(on_ray.indexed) == sorted(local.indexed) == ["b1", "c1"]
    assert list(on_ray.failed) == list(local.failed) == ["trunc"]
    assert on_ray.failed["trunc"] == local.failed["trunc"]  # the same reason
    assert dump_all(ray_db, WHEN) == dump_all(local_db, WHEN)


def _ray_run(catalogue, settings, models, db: Path):
    from indexer.pipeline.ray_engine import index_on_ray
    from search.backends.sqlite.store import SqliteStore

    with SqliteStore(db) as store:
        report = index_on_ray(catalogue, store, models, settings.sampling,
                              settings.aggregation, batch_size=settings.taggers.batch_size,
                              progress=False)
        versions = {s.id: s.config_version for s in store.episode_states()
                    if s.status == "indexed"}
    return report, versions


def test_the_ray_driver_builds_no_taggers(local_ray, shared_dir, tmp_path, video_dir,
                                          monkeypatch):
    from indexer.pipeline.models import Models

    catalogue, settings = _small(tmp_path, video_dir, shared_dir, monkeypatch)
    real = Models.from_settings(settings, None).version(settings.sampling,
                                                        settings.aggregation)
    # A new data dir (no version remembered) and an empty store: selected without one.
    models = Models.from_settings(settings, tmp_path / "data")
    assert models.version_hint() is None
    report, versions = _ray_run(catalogue, settings, models, tmp_path / "ray.sqlite")
    assert sorted(report.indexed) == ["b1", "c1"] and report.skipped == []
    assert versions == {"b1": real, "c1": real}  # the actors' real version, stamped
    assert not models.loaded  # the driver built nothing
    assert models.version_hint() == real  # and remembered what the actors told

    # The next run selects with the remembered version: nothing to do, nothing built.
    again = Models.from_settings(settings, tmp_path / "data")
    report, _ = _ray_run(catalogue, settings, again, tmp_path / "ray.sqlite")
    assert report.indexed == [] and sorted(report.skipped) == ["b1", "c1"]
    assert not again.loaded


def test_on_ray_a_wrong_remembered_version_selects_again(local_ray, shared_dir, tmp_path,
                                                        video_dir, monkeypatch):
    from dataclasses import replace

    from indexer.pipeline.models import Models

    # b1 indexed under an older configuration (other thumbnails)...
    catalogue, old = _small(tmp_path, video_dir, shared_dir, monkeypatch,
                            TVINDEX__AGGREGATION__THUMBNAIL_WIDTH="96")
    db = tmp_path / "ray.sqlite"
    b1 = replace(catalogue, episodes=[e for e in catalogue.episodes if e.id == "b1"])
    _, versions = _ray_run(b1, old, Models.from_settings(old, tmp_path / "old"), db)
    old_version = versions["b1"]
    # ... and the data dir wrongly remembers that version for the new settings: b1 looks
    # up to date, only c1 is selected. The actors tell the real version; b1 is selected
    # again in the same run.
    monkeypatch.delenv("TVINDEX__AGGREGATION__THUMBNAIL_WIDTH")
    _, new = _small(tmp_path, video_dir, shared_dir, monkeypatch)
    assert new.aggregation.thumbnail_width != old.aggregation.thumbnail_width
    models = Models.from_settings(new, tmp_path / "data")
    models.remember(old_version)
    report, versions = _ray_run(catalogue, new, models, db)
    real = Models.from_settings(new, None).version(new.sampling, new.aggregation)
    assert real != old_version
    assert report.indexed == ["c1", "b1"] and report.skipped == [] and not report.failed
    assert versions == {"b1": real, "c1": real}
    assert models.version_hint() == real and not models.loaded


def test_actors_with_other_models_stop_the_job(shared_dir, tmp_path, video_dir, monkeypatch):
    import pickle

    from indexer.pipeline.models import Models
    from indexer.pipeline.ray_engine import RayRun, RayUnavailable
    from indexer.taggers.base import TaggerSpec
    from search.backends.sqlite.store import SqliteStore
    from tvindex.core.labels import LabelSet

    catalogue, settings = _small(tmp_path, video_dir, shared_dir, monkeypatch)
    objects = (LabelSet("objects", "sigmoid", ("person", "car")),)
    one = TaggerSpec("det", objects, "det:aaaa:x", 0, 0)
    other = TaggerSpec("det", objects, "det:bbbb:x", 0, 0)
    with SqliteStore(tmp_path / "s.sqlite") as store:
        run = RayRun(catalogue, store, Models.from_settings(settings, None), settings.sampling,
                     settings.aggregation, batch_size=4, force=False, shard=None,
                     progress=False, fingerprints=None, claims=None, address=None,
                     decoders=None)
        run._spec(pickle.dumps(([one], None)))
        first = run.version
        run._spec(pickle.dumps(([one], None)))  # another actor, the same models: fine
        assert run.version == first
        with pytest.raises(RayUnavailable, match="different models"):
            run._spec(pickle.dumps(([other], None)))


def test_engine_ray_without_ray_is_one_clear_error(tmp_path, video_dir, shared_dir):
    m = write_manifest(tmp_path, [f"Car,c1,{video_dir / 'carphone_pristine.mp4'},0,2"])
    code = ("import sys; sys.modules['ray'] = None; from tvindex.cli import main; "
            f"sys.exit(main(['index', {str(m)!r}, '--engine', 'ray', '--no-progress', "
            f"'--data-dir', {str(tmp_path / 'data')!r}]))")
    env = dict(os.environ, TVINDEX_MODEL_DIR=str(shared_dir / "models"),
               TVINDEX__TAGGERS__ACTIVE="[tflite-detector]")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "tvindex: error: --engine ray needs Ray: pip install 'tvindex[ray]'")
