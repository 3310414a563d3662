"""Hostile configuration: YAML alias bombs and deep nesting, /dev/zero, a directory, a file
too large or not UTF-8, non-finite numbers (.inf, -.inf, .nan) in every float setting, bad
values of secrets, malformed environment variables.

The rule under test: each is one :class:`ConfigError` (through the CLI: exit 2 and one
``tvindex: error: ...`` line, no traceback) naming the file or the variable, found quickly
and with bounded memory; the message never shows a secret's value nor a URL's password."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from training.distill.config import TrainConfig, load_train_config, parse_assignment
from tvindex.core.config_input import safe_repr
from tvindex.settings import CONFIG_MAX_BYTES, ConfigError, load_settings

SECRET = "S3cr3t-Hunter2"  # short: too short for server.api_key (16 characters at least)
FINITE = "Input should be a finite number"


def alias_bomb(levels: int = 9) -> str:
    """About 500 bytes that PyYAML's SafeLoader expands to 2**levels * 10 strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in itertools.pairwise("abcdefghijklmnop"[:levels]):
        refs = ",".join([f"*{prev}"] * 10)
        lines.append(f"{name}: &{name} [{refs}]")
    return "\n".join(lines) + "\n"


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TVINDEX__")}
    base["TVINDEX_DATA_DIR"] = str(tmp_path / "var")
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args, "status"],
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=120, check=False)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``tvindex: error:`` line of a failed run (exit 2, nothing else on stderr)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tvindex: error: "), proc.stderr
    return lines[0]


def fails_fast(call: Any, limit_s: float = 1.0, limit_bytes: int = 20 << 20) -> ConfigError:
    """``call()`` raises ConfigError within ``limit_s`` seconds and ``limit_bytes`` of
    Python allocations."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            call()
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < limit_s, f"took {elapsed:.2f} s"
    assert peak < limit_bytes, f"allocated {peak / 2**20:.0f} MiB"
    return info.value


def float_leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Key paths of every float in a dumped settings tree (list items by index)."""
    if isinstance(value, float):
        return [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in float_leaves(v, (*path, k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in float_leaves(v, (*path, i))]
    return []


def set_path(tree: dict, path: tuple, value: Any) -> dict:
    """``tree`` with the leaf at ``path`` replaced (lists copied and edited in place)."""
    *parents, last = path
    node: Any = tree
    for part in parents:
        node = node[part]
    node[last] = value
    return tree


SETTINGS_FLOATS = float_leaves(load_settings(environ={}).model_dump(mode="json", by_alias=True))
TRAIN_FLOATS = float_leaves(TrainConfig().model_dump(mode="json"))


# --- YAML: aliases, nesting, size, encoding, kind of file -------------------------------


def test_alias_bomb_is_refused_at_once_with_bounded_memory(tmp_path: Path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    assert bomb.stat().st_size < 800
    err = fails_fast(lambda: load_settings(bomb, environ={}))
    assert str(err) == (f"{bomb}: not valid YAML: anchors and aliases (&name, *name) are not "
                        "allowed in configuration (line 1, column 4)")


def test_alias_bomb_in_an_environment_value_stays_text(tmp_path: Path):
    env = {"TVINDEX__TAGGERS__ACTIVE": alias_bomb().replace("\n", " ")}
    err = fails_fast(lambda: load_settings(environ=env))
    assert "taggers.active: Input should be a valid list" in str(err)
    assert "from TVINDEX__TAGGERS__ACTIVE" in str(err)


def test_a_single_alias_is_refused(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sampling: &s\n  every_s: 3\nother: *s\n")
    with pytest.raises(ConfigError, match="anchors and aliases .* are not allowed"):
        load_settings(cfg, environ={})


@pytest.mark.parametrize("text", ["x: " + "[" * 100_000, "x: " + "{a: " * 50_000,
                                  "".join(f"{' ' * i}k{i}:\n" for i in range(60))])
def test_deep_nesting_is_refused_quickly(tmp_path: Path, text: str):
    cfg = tmp_path / "deep.yaml"
    cfg.write_text(text)
    err = fails_fast(lambda: load_settings(cfg, environ={}))
    assert "not valid YAML: nested deeper than 32 levels" in str(err)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_read_only_up_to_the_cap():
    err = fails_fast(lambda: load_settings("/dev/zero", environ={}))
    assert str(err) == ("/dev/zero: larger than 256 KiB; a configuration file holds only the "
                        "keys it changes")


def test_a_file_over_the_cap_is_refused(tmp_path: Path):
    cfg = tmp_path / "big.yaml"
    cfg.write_text("# padding\n" * (CONFIG_MAX_BYTES // 10 + 1))
    with pytest.raises(ConfigError, match="big.yaml: larger than 256 KiB"):
        load_settings(cfg, environ={})
    cfg.write_text("# padding\n" * (CONFIG_MAX_BYTES // 10 - 1))
    assert load_settings(cfg, environ={}).sampling.every_s == 10.0  # under the cap: fine


def test_a_directory_and_latin1_bytes(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, environ={})
    assert str(info.value) == f"{tmp_path}: is a directory, not a configuration file"
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("paths:\n  data_dir: /srv/vidéo\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert str(info.value) == (f"{cfg}: not UTF-8 text (byte 0xe9 at offset 27); "
                               "save it as UTF-8")


def test_yaml_values_python_cannot_build_are_one_error(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("paths:\n  data_dir: 2024-13-45\n")  # a date YAML resolves, but no month 13
    with pytest.raises(ConfigError, match="not valid YAML: month must be in 1..12"):
        load_settings(cfg, environ={})
    cfg.write_text("sampling:\n  every_s: " + "9" * 5000 + "\n")  # over int's digit limit
    with pytest.raises(ConfigError, match="not valid YAML: Exceeds the limit"):
        load_settings(cfg, environ={})
    cfg.write_bytes(b"sampling:\n  mode: a\x00b\n")
    with pytest.raises(ConfigError, match="not valid YAML: unacceptable character #x0000"):
        load_settings(cfg, environ={})


@pytest.mark.parametrize("text,key", [
    ('paths: {data_dir: "/tmp/a\\0b"}', "paths.data_dir"),
    ('catalogue: {sqlite_path: "/tmp/a\\0b"}', "catalogue.sqlite_path"),
    ('taggers: {active: [yolo, "x\\0"]}', "taggers.active"),
])
def test_a_nul_character_in_a_text_or_path_is_refused(tmp_path: Path, text: str, key: str):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text + "\n")  # YAML's "\0" escape: the OS would refuse it much later
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert f"{key}: Value error, must not contain a NUL character (got " in str(info.value)
    with pytest.raises(ConfigError, match="transfer: Value error, must not contain a NUL"):
        load_train_config(None, {"transfer": "/tmp/a\0b"})


# --- finite numbers only -----------------------------------------------------------------


def test_every_float_setting_is_found():
    names = {".".join(map(str, p)) for p in SETTINGS_FLOATS}
    assert {"sampling.every_s", "taggers.timm-classifier.mean.0",
            "aggregation.coverage_threshold.default_sigmoid",
            "elasticsearch.request_timeout_s", "recommend.embedding_weight"} <= names
    assert {"optim.lr", "student.mean.2", "augment.scale.0"} <= {
        ".".join(map(str, p)) for p in TRAIN_FLOATS}


@pytest.mark.parametrize("path", SETTINGS_FLOATS, ids=lambda p: ".".join(map(str, p)))
@pytest.mark.parametrize("bad", [".inf", "-.inf", ".nan"])
def test_non_finite_floats_are_refused_in_yaml(tmp_path: Path, path: tuple, bad: str):
    import yaml

    tree = load_settings(environ={}).model_dump(mode="json", by_alias=True)
    section = {path[0]: set_path(tree, path, "BAD")[path[0]]}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(section).replace("BAD", bad))
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    key = ".".join(map(str, path))
    assert f"{key}: {FINITE} (got " in str(info.value)
    assert f"in {cfg})" in str(info.value)


@pytest.mark.parametrize("var,key", [
    ("TVINDEX__SAMPLING__EVERY_S", "sampling.every_s"),
    ("TVINDEX__SAMPLING__MIN_SHOT_S", "sampling.min_shot_s"),
    ("TVINDEX__ELASTICSEARCH__RETRY_BACKOFF_S", "elasticsearch.retry_backoff_s"),
    ("TVINDEX__RECOMMEND__LABEL_WEIGHT", "recommend.label_weight"),
])
@pytest.mark.parametrize("bad", [".inf", "-.inf", ".nan", "inf", "NaN", "1e999"])
def test_non_finite_floats_are_refused_in_the_environment(var: str, key: str, bad: str):
    with pytest.raises(ConfigError) as info:
        load_settings(environ={var: bad})
    assert f"{key}: {FINITE} (got " in str(info.value)
    assert str(info.value).endswith(f"from {var})")


def test_non_finite_floats_in_lists_and_dicts_from_the_environment():
    env = {"TVINDEX__TAGGERS__TIMM_CLASSIFIER__STD": "[0.5, .nan, 0.5]",
           "TVINDEX__AGGREGATION__COVERAGE_THRESHOLD": "{default_sigmoid: 0.5, "
                                                       "default_softmax: -.inf, coco80: .inf}"}
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    message = str(info.value)
    assert f"taggers.timm-classifier.std.1: {FINITE}" in message
    assert f"aggregation.coverage_threshold.default_softmax: {FINITE}" in message
    assert f"aggregation.coverage_threshold.coco80: {FINITE}" in message


def test_non_finite_flag_values_are_refused():
    with pytest.raises(ConfigError, match=f"sampling.every_s: {FINITE}"):
        load_settings(overrides={"sampling.every_s": float("inf")}, environ={})


@pytest.mark.parametrize("path", TRAIN_FLOATS, ids=lambda p: ".".join(map(str, p)))
def test_non_finite_floats_are_refused_in_the_training_configuration(tmp_path: Path,
                                                                      path: tuple):
    import yaml

    key = ".".join(map(str, path))
    named = path[:-1] if isinstance(path[-1], int) else path  # a list item: give the list
    tree = set_path(TrainConfig().model_dump(mode="json"), path, float("nan"))
    value = tree[named[0]][named[1]]
    with pytest.raises(ConfigError) as info:
        load_train_config(None, {".".join(named): value})
    assert str(info.value).startswith(f"invalid training configuration: {key}: {FINITE}")
    tree = set_path(TrainConfig().model_dump(mode="json"), path, "BAD")
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({named[0]: tree[named[0]]}).replace("BAD", ".inf"))
    with pytest.raises(ConfigError) as info:
        load_train_config(cfg)
    assert f"{key}: {FINITE} (got inf, in {cfg})" in str(info.value)


def test_training_assignments_use_the_safe_loader():
    assert parse_assignment("optim.lr=0.5") == ("optim.lr", 0.5)
    assert parse_assignment("name=&a x") == ("name", "&a x")  # an anchor: kept as text
    bomb = alias_bomb().replace("\n", " ")
    start = time.perf_counter()
    assert parse_assignment(f"name={bomb}") == ("name", bomb)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ConfigError) as info:
        parse_assignment(f"={SECRET}")
    assert SECRET not in str(info.value)


# --- secrets are never echoed ------------------------------------------------------------


@pytest.mark.parametrize("env,key", [
    ({"TVINDEX__SERVER__API_KEY": SECRET},
     "server.api_key: String should have at least 16 characters (from TVINDEX__SERVER__API_KEY)"),
    ({"TVINDEX__ELASTICSEARCH__API_KEY": f"[{SECRET}]"},
     "elasticsearch.api_key: Input should be a valid string"),
    ({"TVINDEX__ELASTICSEARCH__PASSWORD": f"{{x: {SECRET}}}"},
     "elasticsearch.password: Input should be a valid string"),
    ({"TVINDEX__ELASTICSEARCH__USERNAME": "bob", "TVINDEX__ELASTICSEARCH__PASSWORD": "[1]",
      "TVINDEX__SERVER__API_KEY": f"{SECRET}"}, "server.api_key"),
    ({"TVINDEX__ELASTICSEARCH__URL": f"ftp://bob:{SECRET}@es.example:9200"},
     ("elasticsearch.url: Value error, must start with http:// or https:// (got "
      "'ftp://***@es.example:9200', from TVINDEX__ELASTICSEARCH__URL)")),
    ({"ELASTICSEARCH_URL": f"es.example?u=http://bob:{SECRET}@x"}, "elasticsearch.url"),
])
def test_bad_secret_values_are_not_echoed(env: dict[str, str], key: str):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert key in str(info.value)
    assert SECRET not in str(info.value)


def test_secrets_in_a_file_are_not_echoed(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"server:\n  api_key: {SECRET}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert str(info.value) == ("invalid configuration: server.api_key: String should have at "
                               f"least 16 characters (in {cfg})")
    cfg.write_text(f'elasticsearch:\n  password: "{SECRET}\n')  # YAML error on the secret
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, environ={})
    assert "not valid YAML" in str(info.value) and SECRET not in str(info.value)
    assert "\n" not in str(info.value)


def test_values_quoted_in_messages_mask_secrets_and_stay_short():
    text = safe_repr({"api_key": SECRET, "password": SECRET, "token": SECRET,
                      "url": f"https://bob:{SECRET}@es:9200", "x": "y" * 10_000})
    assert SECRET not in text and "https://***@es:9200" in text and len(text) <= 200
    deep: Any = 1
    for _ in range(10_000):
        deep = [deep]
    assert len(safe_repr(deep)) < 50  # no RecursionError, no megabyte message


# --- malformed environment ----------------------------------------------------------------


def test_malformed_environment_names():
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TVINDEX__": "1"})
    assert str(info.value) == ("TVINDEX__: no key after TVINDEX__ (expected "
                               "TVINDEX__SECTION__KEY=value)")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"TVINDEX__SAMPLING": "5"})
    assert str(info.value) == ("invalid configuration: sampling: Input should be a valid "
                               "dictionary or instance of SamplingSettings (got 5, from "
                               "TVINDEX__SAMPLING)")
    deep = "TVINDEX__" + "__".join(["AGGREGATION", "COVERAGE_THRESHOLD"] + ["X"] * 5000)
    err = fails_fast(lambda: load_settings(environ={deep: "1"}))
    assert str(err).startswith("TVINDEX__AGGREGATION__COVERAGE_THRESHOLD__X__X")
    assert str(err).endswith("...: nested deeper than 8 keys") and len(str(err)) < 200


# --- through the real command line -------------------------------------------------------


def test_cli_alias_bomb_dev_zero_directory_latin1(tmp_path: Path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb())
    line = one_error_line(cli(tmp_path, "--config", str(bomb)))
    assert line == (f"tvindex: error: {bomb}: not valid YAML: anchors and aliases (&name, "
                    "*name) are not allowed in configuration (line 1, column 4)")
    if Path("/dev/zero").exists():
        line = one_error_line(cli(tmp_path, "--config", "/dev/zero"))
        assert line == ("tvindex: error: /dev/zero: larger than 256 KiB; a configuration "
                        "file holds only the keys it changes")
    line = one_error_line(cli(tmp_path, "--config", str(tmp_path)))
    assert line == f"tvindex: error: {tmp_path}: is a directory, not a configuration file"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"# caf\xe9\n")
    line = one_error_line(cli(tmp_path, "--config", str(latin1)))
    assert line == (f"tvindex: error: {latin1}: not UTF-8 text (byte 0xe9 at offset 5); "
                    "save it as UTF-8")


def test_cli_environment(tmp_path: Path):
    line = one_error_line(cli(tmp_path, env={"TVINDEX__": "1"}))
    assert line == ("tvindex: error: TVINDEX__: no key after TVINDEX__ (expected "
                    "TVINDEX__SECTION__KEY=value)")
    line = one_error_line(cli(tmp_path, env={"TVINDEX__SAMPLING": "5"}))
    assert line.endswith("sampling: Input should be a valid dictionary or instance of "
                         "SamplingSettings (got 5, from TVINDEX__SAMPLING)")
    line = one_error_line(cli(tmp_path, env={"TVINDEX__SAMPLING__EVERY_S": ".inf"}))
    assert line == ("tvindex: error: invalid configuration: sampling.every_s: Input should be "
                    "a finite number (got inf, from TVINDEX__SAMPLING__EVERY_S)")


def test_cli_never_prints_a_secret(tmp_path: Path):
    proc = cli(tmp_path, "-v", env={"TVINDEX__SERVER__API_KEY": SECRET})
    assert proc.returncode == 2 and SECRET not in proc.stderr + proc.stdout
    proc = cli(tmp_path, env={"TVINDEX__ELASTICSEARCH__URL": f"ftp://u:{SECRET}@h"})
    assert SECRET not in one_error_line(proc) and SECRET not in proc.stdout
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"elasticsearch:\n  password: [\"{SECRET}\"]\n")
    line = one_error_line(cli(tmp_path, "--config", str(cfg)))
    assert line == ("tvindex: error: invalid configuration: elasticsearch.password: Input "
                    f"should be a valid string (in {cfg})")
