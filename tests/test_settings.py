from pathlib import Path

import pytest

from tvindex.settings import ConfigError, env_overrides, load_settings


def test_defaults_load_and_match_documented_file():
    s = load_settings(environ={})
    assert s.sampling.mode == "interval"
    assert s.sampling.every_s == 10.0
    assert s.taggers.active == ["tflite-detector", "timm-classifier"]
    assert s.taggers.for_tagger("tflite-detector").threads == 2
    assert s.taggers.for_tagger("nonexistent") is None


def test_unknown_key_is_an_error_naming_the_key(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sampling:\n  evry_s: 3\n")
    with pytest.raises(ConfigError, match=r"sampling\.evry_s: unknown key"):
        load_settings(cfg, environ={})


def test_unknown_key_suggests_the_closest_key(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sampling:\n  evry_s: 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert f"sampling.evry_s: unknown key; did you mean every_s? (in {cfg})" in str(err.value)
    with pytest.raises(ConfigError, match=r"sampling\.evry_s: unknown key; did you mean "
                                          r"every_s\? \(from TVINDEX__SAMPLING__EVRY_S\)"):
        load_settings(environ={"TVINDEX__SAMPLING__EVRY_S": "5"})
    # sections, nested tagger sections (spelt as in YAML) and flags
    with pytest.raises(ConfigError, match=r"samplng: unknown key; did you mean sampling\?"):
        load_settings(environ={"TVINDEX__SAMPLNG__EVERY_S": "5"})
    with pytest.raises(ConfigError, match=r"taggers\.tflite-detector\.thread: unknown key; "
                                          r"did you mean threads\?"):
        load_settings(environ={"TVINDEX__TAGGERS__TFLITE_DETECTOR__THREAD": "2"})
    with pytest.raises(ConfigError, match=r"taggers\.timm-clasifier: unknown key; did you "
                                          r"mean timm-classifier\?"):
        load_settings(environ={"TVINDEX__TAGGERS__TIMM-CLASIFIER__ARCH": "x"})
    with pytest.raises(ConfigError, match=r"server\.portt: unknown key; did you mean port\?"):
        load_settings(overrides={"server.portt": 1}, environ={})
    # nothing close: no suggestion
    with pytest.raises(ConfigError, match=r"sampling\.zzzz: unknown key$"):
        load_settings(overrides={"sampling.zzzz": 1}, environ={})


def test_bad_value_names_the_key(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sampling:\n  every_s: -1\n")
    with pytest.raises(ConfigError, match=r"sampling\.every_s"):
        load_settings(cfg, environ={})
    cfg.write_text("sampling:\n  mode: sometimes\n")
    with pytest.raises(ConfigError, match=r"sampling\.mode"):
        load_settings(cfg, environ={})


def test_invalid_yaml_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, environ={})


def test_precedence_file_then_env_then_flags(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sampling:\n  every_s: 3\n  mode: keyframes\n")
    env = {"TVINDEX__SAMPLING__EVERY_S": "4", "TVINDEX_MODEL_DIR": "/models",
           "TVINDEX__TAGGERS__TFLITE_DETECTOR__THREADS": "1",
           "TVINDEX__TAGGERS__STUDENT_ONNX__MODEL": "/models/s.onnx"}
    s = load_settings(cfg, environ=env)
    assert (s.sampling.every_s, s.sampling.mode) == (4.0, "keyframes")
    assert s.paths.model_dir == Path("/models")
    assert s.taggers.tflite_detector.threads == 1
    assert str(s.taggers.student_onnx.model) == "/models/s.onnx"
    s = load_settings(cfg, {"sampling.every_s": 5, "sampling.mode": None}, environ=env)
    assert (s.sampling.every_s, s.sampling.mode) == (5.0, "keyframes")


def test_env_override_with_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match=r"sampling\.bogus: unknown key"):
        load_settings(environ={"TVINDEX__SAMPLING__BOGUS": "1"})
    assert env_overrides({"OTHER": "1"}) == {}
