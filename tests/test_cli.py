"""The command line's conventions (issue 16), through the real CLI (``python -m tvindex.cli``
in a subprocess) over a small catalogue written through the real SqliteStore:

- did-you-mean for commands, options, choices and configuration keys (file and environment);
- usage errors are one ``tvindex: error:`` line, exit 2;
- with ``--json`` (global or the command's), an error is one JSON object on stderr with a
  stable code and the exit status;
- every command and option has help, every command an example;
- reading commands refuse a data directory without a catalogue and create nothing;
- one default limit (``tvindex.core.limits.DEFAULT_LIMIT``);
- ``--json`` on every listing command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.backends.sqlite.store import SqliteStore
from tvindex.cli import ERROR_CODES, build_parser
from tvindex.core.labels import LabelSet
from tvindex.core.limits import DEFAULT_LIMIT
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate

REPO = Path(__file__).resolve().parents[1]
OBJ = LabelSet("coco80", "sigmoid", ("person", "dog", "car", "bicycle"))
READERS = [("status",), ("search", "object:dog"), ("labels",), ("similar", "programme", "p0"),
           ("vectors", "status"), ("report", "--out", "{tmp}/report"),
           ("serve", "--port", "0")]
LISTINGS = ["taggers", "labels", "status", "search", "similar", "vectors", "index", "report",
            "tag", "train extract", "train describe", "train fit", "train evaluate"]


def tvindex(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO,
            timeout: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TVINDEX")}
    return subprocess.run([sys.executable, "-m", "tvindex.cli", *args], cwd=cwd,
                          env=base | (env or {}), capture_output=True, text=True,
                          timeout=timeout, check=False)


def one_error_line(proc: subprocess.CompletedProcess, status: int = 2) -> str:
    """The one ``tvindex: error:`` line of a failed run (nothing else on stderr)."""
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tvindex: error: "), proc.stderr
    return lines[0]


def json_error(proc: subprocess.CompletedProcess, code: str, status: int = 2) -> dict:
    """The one JSON object a failed ``--json`` run prints on stderr, checked for its shape."""
    assert proc.returncode == status, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    body = json.loads(lines[0])
    assert set(body) == {"error"}
    err = body["error"]
    assert {"code", "message", "exit_status"} <= set(err), err
    assert err["code"] == code and err["code"] in ERROR_CODES, err
    assert err["exit_status"] == status and isinstance(err["message"], str) and err["message"]
    assert proc.stdout == ""
    return err


def build_catalogue(path: Path, n_episodes: int = 30, n_segments: int = 2) -> None:
    """A catalogue written through SqliteStore: 3 programmes, ``n_episodes`` episodes whose
    segments all carry dogs (so a dog search has more hits than any default limit)."""
    rng = np.random.default_rng(0)
    programmes = [ProgrammeRecord(f"p{i}", f"Programme {i}") for i in range(3)]
    episodes = [EpisodeRecord(f"e{i:03d}", f"p{i % 3}", f"Episode {i}", f"/media/e{i}.mp4")
                for i in range(n_episodes)]

    def unit() -> np.ndarray:
        v = rng.standard_normal(8).astype(np.float32)
        return v / np.linalg.norm(v)

    def frames(n: int) -> np.ndarray:
        x = rng.random((n, 4)).astype(np.float32)
        x[:, 1] = 0.9  # dog
        return x

    with SqliteStore(path) as store:
        store.upsert_catalogue(programmes, episodes)
        store.register_label_sets([OBJ])
        for e in episodes:
            segments = [SegmentTags(j, j * 5.0, j * 5.0 + 5, j * 5.0 + 2.5,
                                    {"coco80": aggregate(frames(3), 0.5)},
                                    thumbnail=rng.bytes(200), embedding=unit())
                        for j in range(n_segments)]
            store.write_episode(EpisodeTags(e.id, f"fp-{e.id}", "v1", n_segments * 5.0,
                                            segments, {"coco80": aggregate(frames(6), 0.5)},
                                            "shots", unit(), "m1"))


@pytest.fixture(scope="module")
def catalogue_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-catalogue") / "catalogue.sqlite"
    build_catalogue(path)
    return path


@pytest.fixture(scope="module")
def data_dir(catalogue_file: Path) -> Path:
    """The catalogue's data directory (read only by these tests)."""
    return catalogue_file.parent


# --- did you mean --------------------------------------------------------------------------
def test_misspelt_command_suggests_the_command():
    line = one_error_line(tvindex("serch", "object:dog"))
    assert "invalid choice: 'serch'" in line and "did you mean search" in line
    line = one_error_line(tvindex("tagers"))
    assert "did you mean taggers" in line
    line = one_error_line(tvindex("train", "fitt"))
    assert "did you mean fit" in line


def test_misspelt_option_and_choice_suggest_the_right_one(data_dir: Path):
    line = one_error_line(tvindex("search", "object:dog", "--limt", "5", "--data-dir",
                                  str(data_dir)))
    assert "unrecognized arguments: --limt 5" in line and "did you mean --limit?" in line
    line = one_error_line(tvindex("status", "--data-dri", str(data_dir)))
    assert "did you mean --data-dir?" in line
    line = one_error_line(tvindex("search", "object:dog", "--level", "epsiode"))
    assert "did you mean episode?" in line
    # argparse's other errors keep the same shape: one line, exit 2, no usage block.
    line = one_error_line(tvindex("search"))
    assert "the following arguments are required: query" in line
    line = one_error_line(tvindex("search", "x", "--limit", "many"))
    assert line == ("tvindex: error: argument --limit: expected an integer, got 'many'")
    line = one_error_line(tvindex("search", "x", "--limit", "0"))
    assert line == "tvindex: error: argument --limit: must be between 1 and 500, got 0"
    line = one_error_line(tvindex("similar", "shot", "x@0", "--limit", "501"))
    assert line == "tvindex: error: argument --limit: must be between 1 and 500, got 501"
    line = one_error_line(tvindex("search", "x", "--offset", "-1"))
    assert line == "tvindex: error: argument --offset: must be at least 0, got -1"


def test_misspelt_configuration_key_suggests_the_key(tmp_path: Path, data_dir: Path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("sampling:\n  evry_s: 5\n")
    line = one_error_line(tvindex("--config", str(cfg), "status", "--data-dir", str(data_dir)))
    assert "sampling.evry_s: unknown key; did you mean every_s?" in line
    assert str(cfg) in line
    line = one_error_line(tvindex("status", "--data-dir", str(data_dir),
                                  env={"TVINDEX__SAMPLING__EVRY_S": "5"}))
    assert ("sampling.evry_s: unknown key; did you mean every_s? "
            "(from TVINDEX__SAMPLING__EVRY_S)") in line
    line = one_error_line(tvindex("status", env={"TVINDEX__SERVR__PORT": "80"}))
    assert "servr: unknown key; did you mean server?" in line
    # Nothing close: no suggestion.
    line = one_error_line(tvindex("status", env={"TVINDEX__SAMPLING__ZZZZZZ": "1"}))
    assert line.endswith("sampling.zzzzzz: unknown key (from TVINDEX__SAMPLING__ZZZZZZ)")


# --- --json errors -------------------------------------------------------------------------
def test_json_errors_are_one_object_with_a_code(tmp_path: Path, data_dir: Path):
    # usage, with --json after or before the command; suggestions are structured too
    err = json_error(tvindex("search", "object:dog", "--limt", "5", "--json"), "usage")
    assert err["suggestions"] == ["--limit"] and "did you mean --limit?" in err["message"]
    err = json_error(tvindex("--json", "serch", "dog"), "usage")
    assert "search" in err["suggestions"]
    json_error(tvindex("--json", "search"), "usage")
    # configuration
    err = json_error(tvindex("--json", "status", env={"TVINDEX__SAMPLING__EVRY_S": "5"}),
                     "config")
    assert "did you mean every_s?" in err["message"]
    # no catalogue, not found, query, input
    missing = tmp_path / "nowhere"
    err = json_error(tvindex("search", "object:dog", "--data-dir", str(missing), "--json"),
                     "no_catalogue")
    assert err["message"].startswith(f"no catalogue at {missing}")
    json_error(tvindex("similar", "programme", "nope", "--data-dir", str(data_dir), "--json"),
               "not_found")
    json_error(tvindex("labels", "--set", "nope", "--data-dir", str(data_dir), "--json"),
               "not_found")
    err = json_error(tvindex("search", "object:dgo", "--data-dir", str(data_dir), "--json"),
                     "query")
    assert "dog" in err["message"]
    json_error(tvindex("--json", "tag", str(tmp_path / "none.mp4")), "input")
    assert not missing.exists()


def test_without_json_errors_stay_one_line(tmp_path: Path, data_dir: Path):
    line = one_error_line(tvindex("similar", "programme", "nope", "--data-dir", str(data_dir)))
    assert not line.startswith("{")
    line = one_error_line(tvindex("search", "object:dgo", "--data-dir", str(data_dir)))
    assert "dog" in line


def test_global_json_gives_json_output(data_dir: Path):
    before = tvindex("--json", "status", "--data-dir", str(data_dir))
    after = tvindex("status", "--data-dir", str(data_dir), "--json")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert len(json.loads(before.stdout)) == 30


# --- help and examples ---------------------------------------------------------------------
def _walk(parser: argparse.ArgumentParser, name: str = "tvindex"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _walk(sub, f"{name} {sub_name}")


def test_every_command_and_option_has_help_and_an_example():
    parsers = list(_walk(build_parser()))
    names = [name for name, _ in parsers]
    # tvindex, its commands, the train steps, the genres steps
    assert len(parsers) == 1 + 13 + 5 + 3, names
    for name, parser in parsers:
        assert parser.description, f"{name}: no description"
        assert parser.epilog and "examples:\n  tvindex " in parser.epilog, \
            f"{name}: no example"
        assert isinstance(parser.formatter_class, type) and issubclass(
            parser.formatter_class, argparse.RawDescriptionHelpFormatter), name
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{name} {choice.dest}: no help"
                continue
            assert action.help and action.help != argparse.SUPPRESS, \
                f"{name} {action.option_strings or action.dest}: no help"


def test_help_shows_examples_and_the_default_limit():
    proc = tvindex("search", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "examples:\n  tvindex search " in proc.stdout
    assert f"(default {DEFAULT_LIMIT})" in proc.stdout
    top = tvindex("--help")
    assert top.returncode == 0 and "examples:" in top.stdout and "--json" in top.stdout


# --- reading commands never create a catalogue ---------------------------------------------
@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c[:2]))
def test_reading_commands_refuse_a_data_dir_without_a_catalogue(tmp_path: Path, command):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    missing = tmp_path / "nonexistent"
    line = one_error_line(tvindex(*args, "--data-dir", str(missing)))
    assert line == (f"tvindex: error: no catalogue at {missing}; index one first with "
                    f"tvindex index SOURCE --data-dir {missing} (or point --data-dir at the "
                    "folder that holds catalogue.sqlite)")
    assert not missing.exists()
    assert not (tmp_path / "report").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_error_line(tvindex(*args, "--data-dir", str(empty)))
    assert f"no catalogue at {empty};" in line
    assert list(empty.iterdir()) == []


def test_reading_commands_refuse_a_missing_sqlite_path(tmp_path: Path):
    file = tmp_path / "sub" / "cat.sqlite"
    line = one_error_line(tvindex("status", env={"TVINDEX__CATALOGUE__SQLITE_PATH": str(file)}))
    assert f"no catalogue at {file};" in line
    assert not (tmp_path / "sub").exists()


def test_reading_commands_refuse_a_missing_elasticsearch_index(es_config, tmp_path: Path):
    env = {"TVINDEX__CATALOGUE__BACKEND": "elasticsearch", "ELASTICSEARCH_URL": es_config.url,
           "TVINDEX__ELASTICSEARCH__INDEX_PREFIX": es_config.index_prefix,
           "TVINDEX__ELASTICSEARCH__REPLICAS": "0"}
    for command in (("status",), ("search", "object:dog"), ("labels",)):
        err = json_error(tvindex(*command, "--json", "--data-dir", str(tmp_path / "d"),
                                 env=env), "no_catalogue")
        assert err["message"].startswith(f"no catalogue at {es_config.url} (index prefix "
                                         f"{es_config.index_prefix}")
    from elasticsearch import Elasticsearch

    es = Elasticsearch(es_config.url)
    try:
        assert not es.indices.exists_alias(name=f"{es_config.index_prefix}meta")
    finally:
        es.close()


def test_writing_commands_still_create_the_catalogue(tmp_path: Path):
    """``vectors sync`` writes, so it may create the store (unchanged behaviour)."""
    data = tmp_path / "new"
    proc = tvindex("vectors", "sync", "--data-dir", str(data))
    assert proc.returncode == 0, proc.stderr
    assert (data / "catalogue.sqlite").is_file()


# --- one default limit ---------------------------------------------------------------------
def test_search_and_similar_use_the_default_limit(data_dir: Path):
    assert DEFAULT_LIMIT == 20
    page = json.loads(tvindex("search", "object:dog", "--data-dir", str(data_dir),
                              "--json").stdout)
    assert page["total"] == 60 and page["limit"] == DEFAULT_LIMIT
    assert len(page["hits"]) == DEFAULT_LIMIT
    shots = json.loads(tvindex("similar", "shot", "e000@0", "--data-dir", str(data_dir),
                               "--json").stdout)
    assert len(shots) == DEFAULT_LIMIT
    episodes = json.loads(tvindex("similar", "episode", "e000", "--data-dir", str(data_dir),
                                  "--json").stdout)
    assert len(episodes) == DEFAULT_LIMIT
    text = tvindex("search", "object:dog", "--data-dir", str(data_dir)).stdout
    assert text.splitlines()[0] == f"60 shot(s) match; showing 1-{DEFAULT_LIMIT}"


# --- --json on every listing command -------------------------------------------------------
def test_every_listing_command_has_json():
    parsers = dict(_walk(build_parser()))
    for name in LISTINGS:
        options = {o for a in parsers[f"tvindex {name}"]._actions for o in a.option_strings}
        assert "--json" in options, name


def test_taggers_json():
    proc = tvindex("taggers", "--json", env={"TVINDEX__TAGGERS__ACTIVE": "[yolo]"})
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"name": "yolo", "active": True} in rows
    assert {"name": "places365", "active": False} in rows
    assert json.loads(tvindex("--json", "taggers",
                              env={"TVINDEX__TAGGERS__ACTIVE": "[yolo]"}).stdout) == rows
    text = tvindex("taggers").stdout
    assert "(* = active in taggers.active)" in text


def test_labels_and_vectors_json(data_dir: Path):
    labels = json.loads(tvindex("labels", "--data-dir", str(data_dir), "--json").stdout)
    assert {x["name"] for x in labels} == {"person", "dog", "car", "bicycle"}
    status = tvindex("vectors", "status", "--data-dir", str(data_dir), "--json")
    assert status.returncode in (0, 1), status.stderr  # never synced here: stale, not an error
    assert "levels" in json.loads(status.stdout)


def test_the_command_exits_with_mains_status_and_skips_the_last_collection(tmp_path: Path):
    """``tvindex`` (the console script and ``python -m tvindex.cli``) is ``entry``: main's
    exit status, and the objects left at exit frozen, so the interpreter's last garbage
    collection does not walk everything the run imported."""
    from importlib.metadata import entry_points

    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("tvindex") == "tvindex.cli:entry"
    probe = tmp_path / "probe.py"  # reports what the exit sees, after entry returned
    probe.write_text("import atexit, gc, runpy, sys\n"
                     "atexit.register(lambda: print('frozen', gc.get_freeze_count(),"
                     " file=sys.stderr))\n"
                     "sys.argv = ['tvindex', *sys.argv[1:]]\n"
                     "runpy.run_module('tvindex.cli', run_name='__main__')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVINDEX")}
    proc = subprocess.run([sys.executable, str(probe), "statsu"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2  # main's usage error
    frozen = int(proc.stderr.split("frozen ")[1].split()[0])
    assert frozen > 10_000, proc.stderr
