"""The web server loads no network until a picture is queried (issue 13).

``tvindex serve`` answers searches, pages and similar items from the catalogue alone: a fresh
interpreter runs the command (with waitress replaced by a stand-in that sends the requests)
and never imports torch, timm or ultralytics. The first picture query builds the embedding
tagger, once, and only that tagger (``indexer.embedder.build_embedder``), never every active
tagger."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_webui_catalogue import REPO, build_catalogue, web_settings
from test_webui_similar import EMBEDDINGS, MODEL, ColourEmbedder, picture

import indexer.embedder
from indexer.embedder import build_embedder, embedder_candidates
from indexer.frame_tagging import choose_embedder
from indexer.taggers import TaggerError
from tvindex.settings import load_settings
from webui import create_app

HEAVY = ("torch", "torchvision", "timm", "ultralytics")
URLS = ("/api/v1/search?q=dog", "/?q=dog", "/programmes/beach-dogs",
        "/api/v1/programmes/beach-dogs/similar", "/api/v1/shots/bd1@0/similar",
        "/episodes/bd1")

SERVE = textwrap.dedent("""
    import json, sys
    import waitress

    status = {}

    class Server:  # waitress stand-in: serves the requests below, then returns
        effective_port = 8080

        def __init__(self, app, **kw):
            self.app = app

        def run(self):
            client = self.app.test_client()
            for url in json.loads(sys.argv[2]):
                status[url] = client.get(url).status_code

        def close(self):
            pass

    waitress.create_server = Server
    from tvindex import cli

    rc = cli.main(["serve", "--port", "0", "--data-dir", sys.argv[1]])
    print(json.dumps({"rc": rc, "status": status,
                      "heavy": sorted(m for m in json.loads(sys.argv[3]) if m in sys.modules)}))
""")


def test_serve_answers_without_importing_torch(tmp_path: Path):
    build_catalogue(tmp_path, EMBEDDINGS, MODEL).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVINDEX_")}
    proc = subprocess.run(
        [sys.executable, "-c", SERVE, str(tmp_path), json.dumps(URLS), json.dumps(HEAVY)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0
    assert out["status"] == {url: 200 for url in URLS}, proc.stderr
    assert out["heavy"] == [], f"serving imported {out['heavy']}"


# --- the first picture query builds the embedding tagger, once ----------------------------

def upload(client, data: bytes):
    return client.post("/api/v1/similar", data={"image": (io.BytesIO(data), "a.jpg")},
                       content_type="multipart/form-data")


def test_the_embedder_is_built_on_the_first_picture_query_only(tmp_path, monkeypatch):
    built: list[ColourEmbedder] = []

    def build(settings):
        built.append(ColourEmbedder())
        return built[-1]

    monkeypatch.setattr(indexer.embedder, "build_embedder", build)
    app = create_app(web_settings(tmp_path), build_catalogue(tmp_path, EMBEDDINGS, MODEL))
    client = app.test_client()
    for url in URLS:
        assert client.get(url).status_code == 200
    assert built == []  # searches, pages and similar items need no network
    red = upload(client, picture(colour=(230, 20, 20)))
    assert red.status_code == 200, red.get_data(as_text=True)
    assert [h["id"] for h in red.get_json()["items"]][:2] == ["c1@0", "c1@1"]
    assert upload(client, picture(colour=(10, 40, 240))).status_code == 200
    assert len(built) == 1 and len(built[0].shapes) == 2


def test_no_embedding_tagger_is_409(tmp_path, monkeypatch):
    monkeypatch.setattr(indexer.embedder, "build_embedder", lambda settings: None)
    app = create_app(web_settings(tmp_path), build_catalogue(tmp_path, EMBEDDINGS, MODEL))
    resp = upload(app.test_client(), picture())
    assert resp.status_code == 409
    assert "no embedding tagger is configured" in resp.get_json()["error"]["message"]


# --- build_embedder: the tagger choose_embedder picks, built alone --------------------------

class Built:
    """A built tagger as far as the rule looks: its name and feature size."""

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.embedding_dim = name, dim


DIMS = {"yolo": 0, "tflite-detector": 0, "timm-classifier": 1280, "places365": 512,
        "student": 256}


def settings_for(active: list[str], embedding: str):
    return load_settings(overrides={"taggers.active": active, "taggers.embedding": embedding,
                                    "taggers.device": "cpu"}, environ={})


@pytest.fixture()
def builds(monkeypatch) -> list[str]:
    """Tagger construction replaced by a recorder: the names built, in order."""
    names: list[str] = []

    def create(name, cfg=None, ctx=None):
        names.append(name)
        return Built(name, DIMS[name])

    monkeypatch.setattr(indexer.embedder, "create_tagger", create)
    monkeypatch.setattr(indexer.embedder, "taggers_from_settings",
                        lambda s: [create(n) for n in s.taggers.active])
    return names


@pytest.mark.parametrize(("active", "embedding", "chosen", "built"), [
    (["tflite-detector", "timm-classifier"], "auto", "timm-classifier",
     ["tflite-detector", "timm-classifier"]),
    (["timm-classifier", "yolo"], "auto", "timm-classifier", ["timm-classifier"]),
    (["yolo", "places365", "timm-classifier", "student"], "auto", "student", ["student"]),
    (["places365", "timm-classifier"], "auto", "places365", ["places365"]),
    (["yolo", "tflite-detector"], "auto", None, ["yolo", "tflite-detector"]),
    ([], "auto", None, []),
    (["yolo", "timm-classifier", "places365"], "places365", "places365", ["places365"]),
    (["yolo", "timm-classifier"], " none ", None, []),
])
def test_build_embedder_builds_only_what_the_rule_needs(builds, active, embedding, chosen,
                                                        built):
    got = build_embedder(settings_for(active, embedding))
    assert (got.name if got is not None else None) == chosen
    assert builds == built
    # The same answer as the indexer's rule over every active tagger.
    everything = [Built(n, DIMS[n]) for n in active]
    rule = choose_embedder(everything, embedding)
    assert (rule.name if rule is not None else None) == chosen
    assert embedder_candidates(active, embedding)[:len(built)] == built


@pytest.mark.parametrize(("active", "embedding"), [
    (["yolo", "timm-classifier"], "places365"),  # not active
    (["yolo", "timm-classifier"], "yolo"),  # a detector: no features
])
def test_build_embedder_errors_are_the_rules(builds, active, embedding):
    with pytest.raises(TaggerError) as rule:
        choose_embedder([Built(n, DIMS[n]) for n in active], embedding)
    with pytest.raises(TaggerError) as got:
        build_embedder(settings_for(active, embedding))
    assert str(got.value) == str(rule.value)


def test_features_are_unit_length_like_the_indexers(tmp_path):
    """The recommender normalises a picture's features with the indexer's normaliser."""
    from search.recommend import Recommender
    from tvindex.core.vectors import unit_rows

    class Embedder(ColourEmbedder):
        def predict_with_embeddings(self, frames):
            return {}, np.array([[3.0, 4.0, 0.0, 1e-3, 0, 0, 0, 0]], np.float32)

    store = build_catalogue(tmp_path, EMBEDDINGS, MODEL)
    v = Recommender(store, embedder=Embedder()).embed_image(np.zeros((4, 4, 3), np.uint8))
    expected = unit_rows(np.array([3.0, 4.0, 0.0, 1e-3, 0, 0, 0, 0], np.float32),
                         dtype=np.float32)
    assert v.dtype == np.float32 and np.array_equal(v, expected)
