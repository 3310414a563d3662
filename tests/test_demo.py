"""The README's demo: the demo catalogue indexed with the two offline teachers answers the
acceptance queries (cyclist shot in the top three; the pedestrian programme first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.engine import run_search
from search.sqlite_store import SqliteStore

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, shared_dir: Path) -> SqliteStore:
    data = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, TVINDEX_SHARED_DIR=str(shared_dir),
               TVINDEX_MODEL_DIR=str(shared_dir / "models"))
    proc = subprocess.run(
        [sys.executable, "-m", "tvindex.cli", "--config", str(REPO / "demo" / "config.yaml"),
         "index", str(REPO / "demo" / "catalogue.csv"), "--data-dir", str(data),
         "--no-progress"], env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "indexed 11, unchanged 0, failed 0" in proc.stdout
    return SqliteStore(data / "catalogue.sqlite")


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
