"""The resolver reuses its label index until the store's vocabulary changes."""

from pathlib import Path

from search.backends.sqlite.store import SqliteStore
from search.engine import resolve
from search.query import resolution as query
from tvindex.core.labels import LabelSet
from tvindex.core.records import EpisodeRecord, ProgrammeRecord


def test_index_is_reused_until_labels_or_titles_change(tmp_path: Path, monkeypatch):
    store = SqliteStore(tmp_path / "c.sqlite")
    store.upsert_catalogue([ProgrammeRecord("p1", "Morning")],
                           [EpisodeRecord("e1", "p1", "One", "/x.mp4")])
    store.register_label_sets([LabelSet("coco80", "sigmoid", ("person", "dog"))])
    built = []
    real = query._Index
    monkeypatch.setattr(query, "_Index", lambda *a: built.append(1) or real(*a))
    query._INDEX_CACHE.clear()
    resolve(store, "object:dog")
    resolve(store, "object:person")
    assert len(built) == 1
    store.upsert_catalogue([ProgrammeRecord("p2", "Evening")], [])
    assert resolve(store, "Evening").programme_ids == ("p2",)  # new title seen at once
    assert len(built) == 2
    store.register_label_sets([LabelSet("places365", "softmax", ("beach",))])
    assert resolve(store, "scene:beach").groups[0][0].name == "beach"
    assert len(built) == 3
