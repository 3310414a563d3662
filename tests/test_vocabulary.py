"""Honest vocabularies (issue 15, item 8): only the ImageNet stand-in's places answer scene:,
label sets carry display names from the settings, and the pages' example queries come from
labels the catalogue really carries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from test_webui_catalogue import web_settings

from search.backends.sqlite.store import SqliteStore
from search.engine import run_search
from search.query import QueryError
from tvindex.core.labels import LabelSet, label_role, place_labels
from tvindex.core.records import EpisodeRecord, EpisodeTags, ProgrammeRecord, SegmentTags
from tvindex.core.stats import aggregate
from webui import create_app

IMAGENET = LabelSet("imagenet1k", "softmax", ("seashore", "orange", "valley", "church", "dog"))
COCO = LabelSet("coco80", "sigmoid", ("person", "car", "bicycle"))


def test_the_place_list_names_real_imagenet_classes():
    from indexer.taggers.labels import imagenet1k

    places = place_labels("imagenet1k")
    assert places is not None and len(places) == 53
    assert places <= set(imagenet1k().labels)  # every listed name is an ImageNet label
    assert {"seashore", "valley", "church", "library", "restaurant"} <= places
    assert label_role("imagenet1k", "seashore") == "scene"
    assert label_role("imagenet1k", "orange") == label_role("imagenet1k", "dog") == "other"
    assert label_role("coco80", "person") == "object"  # whole-set roles are unchanged
    assert place_labels("coco80") is None


def _store(root: Path) -> SqliteStore:
    store = SqliteStore(root / "catalogue.sqlite", min_score=0.05, top_k=0)
    store.upsert_catalogue([ProgrammeRecord("coast", "Coast", "", "nature")],
                           [EpisodeRecord("c1", "coast", "One", str(root / "c.mp4"),
                                          dt.date(2021, 1, 1))])
    store.register_label_sets([COCO, IMAGENET])
    coco = aggregate(np.array([[0.9, 0.2, 0.7]], np.float32), 0.5)
    imnet = aggregate(np.array([[0.5, 0.3, 0.1, 0.05, 0.05]], np.float32), 0.2)
    seg = SegmentTags(0, 0.0, 5.0, 2.5, {"coco80": coco, "imagenet1k": imnet})
    store.write_episode(EpisodeTags("c1", "fp", "v1", 5.0, [seg],
                                    {"coco80": coco, "imagenet1k": imnet}, "shots"))
    return store


def test_scene_terms_reach_only_places(tmp_path: Path):
    store = _store(tmp_path)
    assert [h.id for h in run_search(store, "scene:seashore").hits] == ["c1@0"]
    with pytest.raises(QueryError, match="unknown label 'orange' in 'scene:orange'"):
        run_search(store, "scene:orange")
    assert [h.id for h in run_search(store, "imagenet1k:orange").hits] == ["c1@0"]


def test_pages_name_sets_and_draw_examples_from_the_catalogue(tmp_path: Path):
    store = _store(tmp_path)
    app = create_app(web_settings(tmp_path), store)
    client = app.test_client()
    html = client.get("/").get_data(as_text=True)
    # The search box's hint names labels the catalogue carries, each with the right field.
    # (person and bicycle are each in one episode and shot: ties go by name)
    assert 'placeholder="Search the pictures: object:bicycle scene:seashore -object:person"' in html
    assert "scene:street" not in html and "scene:beach" not in html
    labels = client.get("/labels?set=imagenet1k").get_data(as_text=True)
    assert "ImageNet-1k (stand-in for Places365)" in labels
    assert "only its 53 classes that are places" in labels
    assert 'href="/?q=scene:seashore"' in labels and 'href="/?q=imagenet1k:orange"' in labels
    items = client.get("/api/v1/labels?set=imagenet1k").get_json()["items"]
    by_name = {i["name"]: i for i in items}
    assert by_name["seashore"]["role"] == "scene" and by_name["seashore"]["query"] == "scene:seashore"
    assert by_name["orange"]["role"] == "other" and by_name["orange"]["query"] == "imagenet1k:orange"
    assert by_name["orange"]["label_set_name"] == "ImageNet-1k (stand-in for Places365)"
    # Display names come from the settings.
    named = web_settings(tmp_path)
    named.vocabulary.display_names["coco80"] = "Objectes (COCO)"
    html = create_app(named, store).test_client().get("/labels?set=coco80").get_data(as_text=True)
    assert "Objectes (COCO)" in html


def test_examples_follow_the_catalogue(tmp_path: Path):
    store = _store(tmp_path)
    app = create_app(web_settings(tmp_path), store)
    client = app.test_client()
    assert "Search the pictures: object:bicycle scene:seashore" in client.get("/").get_data(
        as_text=True)
    # A write that makes another label the most common one changes the examples.
    store.upsert_catalogue([ProgrammeRecord("coast", "Coast", "", "nature")],
                           [EpisodeRecord("c2", "coast", "Two", str(tmp_path / "d.mp4"),
                                          dt.date(2021, 1, 2))])
    coco = aggregate(np.array([[0.9, 0.2, 0.0]], np.float32), 0.5)
    imnet = aggregate(np.array([[0.05, 0.05, 0.8, 0.05, 0.05]], np.float32), 0.2)
    seg = SegmentTags(0, 0.0, 5.0, 2.5, {"coco80": coco, "imagenet1k": imnet})
    store.write_episode(EpisodeTags("c2", "fp2", "v1", 5.0, [seg],
                                    {"coco80": coco, "imagenet1k": imnet}, "shots"))
    html = client.get("/").get_data(as_text=True)
    assert "Search the pictures: object:person scene:seashore -object:bicycle" in html
    body = client.get("/api/v1/search").get_json()
    assert "q=object:person scene:seashore -object:bicycle" in body["detail"]
