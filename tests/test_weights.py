from pathlib import Path

import pytest

from indexer.weights import ModelNotFoundError, ModelResolver, resolve_weights
from tvindex.settings import load_settings


def _settings(model_dir=None, cache_dir=None):
    env = {}
    if model_dir:
        env["TVINDEX_MODEL_DIR"] = str(model_dir)
    s = load_settings(environ=env)
    if cache_dir:
        s.paths.cache_dir = cache_dir
    return s


def test_explicit_path_wins(tmp_path: Path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    assert resolve_weights(str(f), ModelResolver.from_settings(_settings())) == f
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.bin"), ModelResolver.from_settings(_settings()))


def test_model_dir_then_cache(tmp_path: Path):
    mdir, cdir = tmp_path / "models", tmp_path / "cache"
    mdir.mkdir()
    cdir.mkdir()
    (cdir / "a.pt").write_bytes(b"cache")
    assert resolve_weights("a.pt", ModelResolver.from_settings(_settings(mdir, cdir))) == cdir / "a.pt"
    (mdir / "a.pt").write_bytes(b"dir")
    assert resolve_weights("a.pt", ModelResolver.from_settings(_settings(mdir, cdir))) == mdir / "a.pt"


def test_missing_offline_is_one_clear_error(tmp_path: Path):
    s = _settings(tmp_path, tmp_path / "cache")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_weights("resnet18_places365.pth.tar", ModelResolver.from_settings(s), config_key="taggers.places365.weights")
    msg = str(err.value)
    assert "resnet18_places365.pth.tar" in msg
    assert "TVINDEX_MODEL_DIR" in msg
    assert "allow_download" in msg and "places2.csail.mit.edu" in msg
    assert not (tmp_path / "cache" / "resnet18_places365.pth.tar").exists()
