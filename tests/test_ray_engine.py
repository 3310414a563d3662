"""The Ray engine (indexer.pipeline.ray_engine) on a local Ray cluster
(``ray.init(num_cpus=2)``): the catalogue equals the local engine's; a corrupt file fails
only its episode; a second run resumes (nothing tagged); Ray missing is one clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_pipeline import dump_all, read_models, write_manifest

pytestmark = pytest.mark.media
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'tvindex[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture()
def settings(shared_dir: Path, tmp_path: Path, monkeypatch):
    from tvindex.settings import load_settings

    for k, v in {"TVINDEX_MODEL_DIR": str(shared_dir / "models"),
                 "TVINDEX_SHARED_DIR": str(shared_dir),
                 "TVINDEX_DATA_DIR": str(tmp_path / "data"),
                 "TVINDEX__TAGGERS__ACTIVE": "[tflite-detector]",
                 "TVINDEX__SAMPLING__MODE": "interval", "TVINDEX__SAMPLING__EVERY_S": "1",
                 "TVINDEX__TAGGERS__BATCH_SIZE": "4"}.items():
        monkeypatch.setenv(k, v)
    return load_settings(None, {})


@pytest.mark.slow  # a local Ray cluster and its actors start in ~1 min on 2 loaded cores
def test_ray_catalogue_equals_local_and_a_corrupt_file_fails_alone(local_ray, settings,
                                                                  tmp_path, video_dir,
                                                                  bad_media):
    from indexer.catalogue import load_catalogue
    from indexer.claims import EpisodeClaims
    from indexer.fingerprints import FingerprintCache
    from indexer.pipeline.engine import index_catalogue
    from indexer.pipeline.models import Models
    from indexer.pipeline.ray_engine import index_on_ray
    from search.backends.sqlite.store import SqliteStore

    bikes, car = video_dir / "bikes.mp4", video_dir / "carphone_pristine.mp4"
    m = write_manifest(tmp_path, [f"Bikes,b1,{bikes},0,5.48", f"Bikes,b2,{bikes},5.48,10",
                                  f"Car,c1,{car},0,2", f"Car,c2,{car},2,4",
                                  f"Broken,trunc,{bad_media['truncated']},,"])
    catalogue = load_catalogue(m)
    models = Models.from_settings(settings, tmp_path / "ray-data")
    local_db, ray_db = tmp_path / "local.sqlite", tmp_path / "ray.sqlite"
    with SqliteStore(local_db) as store:
        local = index_catalogue(catalogue, store, models, settings.sampling,
                                settings.aggregation, batch_size=4, progress=False, workers=1)
    with SqliteStore(ray_db) as store:
        on_ray = index_on_ray(catalogue, store, models, settings.sampling,
                              settings.aggregation, batch_size=4, progress=False,
                              fingerprints=FingerprintCache(tmp_path / "fp.sqlite"),
                              claims=EpisodeClaims(tmp_path / "claims"))
    assert sorted(on_ray.indexed) == sorted(local.indexed) == ["b1", "b2", "c1", "c2"]
    assert list(on_ray.failed) == list(local.failed) == ["trunc"]
    assert on_ray.failed["trunc"] == local.failed["trunc"]  # the same reason
    assert on_ray.frames == local.frames > 0
    assert dump_all(ray_db) == dump_all(local_db)
    assert read_models(ray_db) == read_models(local_db)

    # Resumable: the same fingerprints and versions, so nothing is tagged again.
    with SqliteStore(ray_db) as store:
        again = index_on_ray(catalogue, store, models, settings.sampling,
                             settings.aggregation, batch_size=4, progress=False,
                             fingerprints=FingerprintCache(tmp_path / "fp.sqlite"),
                             claims=EpisodeClaims(tmp_path / "claims"))
    assert again.indexed == [] and sorted(again.skipped) == ["b1", "b2", "c1", "c2"]
    assert again.frames == 0


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
