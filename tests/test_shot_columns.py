"""Shot-level search over the dense column cache gives exactly the posting-list ranking, and
sees every write at once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from search.backends.sqlite.store import SqliteStore
from search.engine import resolve, run_search
from search.ranking import rank
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate

OBJ = LabelSet("coco80", "sigmoid", tuple(f"obj{i}" for i in range(12)))
SCN = LabelSet("places365", "softmax", tuple(f"scene{i}" for i in range(6)))


def random_episode(rng: np.random.Generator, eid: str, n: int) -> EpisodeTags:
    segs = []
    for i in range(n):
        obj = rng.beta(0.3, 2.0, (2, len(OBJ))).astype(np.float32)
        scn = rng.dirichlet(np.full(len(SCN), 0.3), 2).astype(np.float32)
        segs.append(SegmentTags(i, i * 5.0, i * 5.0 + 5, i * 5.0 + 2.5,
                                {"coco80": aggregate(obj, 0.5), "places365": aggregate(scn, 0.2)}))
    stats = {k: aggregate(np.stack([s.stats[k].score for s in segs]), 0.5) for k in ("coco80",
                                                                                    "places365")}
    return EpisodeTags(eid, "fp", "v", n * 5.0, segs, stats)


@pytest.fixture()
def store(tmp_path: Path) -> SqliteStore:
    rng = np.random.default_rng(7)
    s = SqliteStore(tmp_path / "c.sqlite", min_score=0.1, top_k=2)
    progs = [ProgrammeRecord(f"p{i}", f"Programme {i}", genre="news" if i % 2 else "drama")
             for i in range(4)]
    eps = [EpisodeRecord(f"e{i}", f"p{i % 4}", f"Ep {i}", "/x.mp4", dt.date(2020, 1, 1 + i))
           for i in range(20)]
    s.upsert_catalogue(progs, eps)
    s.register_label_sets([OBJ, SCN])
    for i in range(20):
        s.write_episode(random_episode(rng, f"e{i}", int(rng.integers(1, 15))))
    return s


QUERIES = ["object:obj1", "object:obj1 scene:scene3 ~object:obj2", "object:obj0 OR object:obj5",
           "object:obj3 -object:obj4 -scene:scene1", "object:obj2 genre:news",
           "object:obj6 programme:p2 after:2020-01-05", "scene:scene0 OR scene:scene2 object:obj7"]


@pytest.mark.parametrize("text", QUERIES)
def test_dense_path_equals_posting_lists(store: SqliteStore, text: str):
    q = resolve(store, text)
    allowed = store._allowed(q, "shot")
    groups = [[store._postings("shot", r.label_id, allowed) for r in g] for g in q.groups]
    excluded = [store._postings("shot", r.label_id, allowed) for r in q.excluded]
    soft = [store._postings("shot", r.label_id, allowed) for r in q.soft_excluded]
    want, want_total = rank(groups, excluded, None, top=1000, soft=soft)
    got, got_total = store._rank_shots(q, allowed, top=1000)
    assert got_total == want_total > 0
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-12)
    page = run_search(store, text, "shot", limit=7, offset=2)
    assert page.total == want_total


def test_cache_follows_every_write(store: SqliteStore):
    before = run_search(store, "object:obj1", "shot", limit=500)
    assert before.total == len(before.hits) > 0
    victim = before.hits[0].episode_id
    gone = sum(h.episode_id == victim for h in before.hits)
    other = SqliteStore(store.path)  # another handle (as another process would) writes
    other.mark_failed(victim, "gone")
    after = run_search(store, "object:obj1", "shot", limit=500)
    assert all(h.episode_id != victim for h in after.hits)
    assert after.total == before.total - gone
    other.write_episode(random_episode(np.random.default_rng(1), victim, 3))
    again = run_search(store, "object:obj1", "shot", limit=500)
    assert {h.id for h in again.hits} >= {h.id for h in after.hits}
