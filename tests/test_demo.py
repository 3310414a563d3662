"""The README's demo: the demo catalogue indexed with the two offline teachers answers the
acceptance queries (cyclist shot in the top three; the pedestrian programme first)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_webui_catalogue import index_demo

from search.backends.sqlite.store import SqliteStore
from search.engine import run_search

pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, shared_dir: Path) -> SqliteStore:
    # The demo is indexed once per session (through the CLI, as `make demo` does) and shared
    # with the web tests.
    return SqliteStore(index_demo(tmp_path_factory, shared_dir) / "catalogue.sqlite")


def test_bicycle_finds_the_cyclist_shot(demo_store: SqliteStore):
    page = run_search(demo_store, "object:bicycle", "shot", limit=3)
    cyclist = [h for h in page.hits if h.episode_id == "bici-01" and h.start_s <= 4.5 < h.end_s]
    assert cyclist, [(h.id, h.start_s, h.end_s) for h in page.hits]
    assert cyclist[0].time_s is not None and cyclist[0].start_s <= cyclist[0].time_s


def test_person_ranks_the_plaza_programme_first(demo_store: SqliteStore):
    page = run_search(demo_store, "object:person", "programme", limit=5)
    assert page.hits[0].id == "la-placa"
    assert page.hits[0].programme_title == "La plaça"


def test_demo_catalogue_is_complete(demo_store: SqliteStore):
    states = demo_store.episode_states()
    assert len(states) == 11 and {s.status for s in states} == {"indexed"}
    assert len(demo_store.programmes()) == 5
    assert demo_store.thumbnail("bici-01", 0)[:2] == b"\xff\xd8"  # a JPEG


def test_cli_recommendations_and_query_by_example(tmp_path_factory, shared_dir: Path):
    """`tvindex vectors` and `tvindex similar` over the demo, as scripts/demo.sh runs them."""
    import json
    import subprocess
    import sys

    from test_webui_catalogue import REPO, demo_env

    data = index_demo(tmp_path_factory, shared_dir)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tvindex.cli", "--config", str(REPO / "demo" / "config.yaml"),
             *args, "--data-dir", str(data)], env=demo_env(shared_dir), capture_output=True,
            text=True, timeout=300, cwd=REPO, check=False)

    status = json.loads(cli("vectors", "status", "--json").stdout)
    assert status["current"] and status["levels"]["shot"]["count"] == len(
        [s for e in SqliteStore(data / "catalogue.sqlite").episode_states()
         for s in range(e.n_segments)])
    programmes = json.loads(cli("similar", "programme", "la-placa", "--limit", "4",
                                "--json").stdout)
    assert [p["id"] for p in programmes] and "la-placa" not in [p["id"] for p in programmes]
    assert programmes == sorted(programmes, key=lambda p: (-p["similarity"], p["id"]))
    shots = json.loads(cli("similar", "shot", "bici-01@2", "--limit", "3", "--json").stdout)
    assert len(shots) == 3 and "bici-01@2" not in [h["id"] for h in shots]
    dog = str(shared_dir / "media" / "images" / "dog.jpg")
    # No dog in the footage: under the similarity floor (pictures.min_similarity) nothing is
    # a close match; without the floor, the nearest shots.
    floor = cli("similar", "image", dog, "--limit", "2", "--json")
    assert json.loads(floor.stdout) == [] and "no close match" in floor.stderr
    picture = json.loads(cli("similar", "image", dog, "--limit", "2", "--min-similarity", "0",
                             "--json").stdout)
    assert len(picture) == 2 and all("@" in h["id"] for h in picture)
    refused = cli("similar", "image", str(REPO / "README.md"))
    assert refused.returncode == 2 and "not an image of a supported format" in refused.stderr
    unknown = cli("similar", "programme", "no-such-programme")
    assert unknown.returncode == 2 and "no-such-programme" in unknown.stderr
