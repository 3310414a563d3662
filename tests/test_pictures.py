"""Search by picture (issue 15, item 7): uploads kept by content so the result has a URL to
share, the similarity floor's "no close match", and the embedding network warmed at start.

On the hand-built catalogue with the stand-in colour embedder of ``test_webui_similar``; the
floor against the real embedder is checked on the demo there (``test_demo_query_by_a_photo``)
and on the CLI below."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_webui_catalogue import REPO, ApiSchemas, demo_env, index_demo, web_settings
from test_webui_similar import (
    EMBEDDINGS,
    MODEL,
    ColourEmbedder,
    build_catalogue,
    check_error,
    picture,
    upload,
)

import indexer.embedder
from search.recommend import Recommender
from search.vector_catalogue import VectorCatalogue
from webui import create_app
from webui.pictures import PictureStore, embedder_state, picture_id, warm_embedder

RED = picture(colour=(230, 20, 20))


def _app(tmp_path: Path, floor: float | None = None, **pictures):
    settings = web_settings(tmp_path)
    settings.pictures.min_similarity = floor
    for key, value in pictures.items():
        setattr(settings.pictures, key, value)
    store = build_catalogue(tmp_path, EMBEDDINGS, MODEL)
    app = create_app(settings, store)
    app.extensions["tvindex"].use_recommender(
        Recommender(store, VectorCatalogue(store, tmp_path / "vectors"),
                    embedder=ColourEmbedder()))
    return app


@pytest.fixture()
def app(tmp_path: Path):
    return _app(tmp_path)


@pytest.fixture()
def schemas(app) -> ApiSchemas:
    return ApiSchemas(app.test_client().get("/api/v1/openapi.json").get_json())


def test_an_upload_answers_with_a_url_that_gives_the_same_answer(app, schemas, tmp_path):
    client = app.test_client()
    posted = upload(client, RED, query_string={"limit": 3})
    assert posted.status_code == 200
    body = posted.get_json()
    schemas.validate(body, "SimilarShots")
    pid = body["query"]["image"]["id"]
    assert len(pid) == 64 and body["links"] == {"self": f"/api/v1/similar?image={pid}",
                                               "page": f"/similar?image={pid}"}
    assert (tmp_path / "pictures" / f"{pid}.jpg").is_file()  # <data_dir>/pictures
    shared = client.get(body["links"]["self"] + "&limit=3")
    assert shared.status_code == 200
    again = shared.get_json()
    schemas.validate(again, "SimilarShots")
    assert again["items"] == body["items"] and [h["id"] for h in again["items"]][:2] == [
        "c1@0", "c1@1"]
    # The same picture uploaded again is the same id (content-addressed), one file.
    assert upload(client, RED).get_json()["query"]["image"]["id"] == pid
    assert len(list((tmp_path / "pictures").glob("*.jpg"))) == 1


def test_the_page_redirects_to_its_shareable_url(app):
    client = app.test_client()
    resp = upload(client, RED, url="/similar")
    assert resp.status_code == 303
    location = resp.headers["Location"]
    assert location.startswith("/similar?image=")
    page = client.get(location)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="share-link"' in html
    assert 'data-hit-id="c1@0"' in html and "kept 7 days after its last use" in html


def test_unknown_expired_and_malformed_ids(app, schemas, tmp_path):
    client = app.test_client()
    unknown = "0" * 64
    resp = client.get(f"/api/v1/similar?image={unknown}")
    assert "upload it again" in check_error(resp, schemas, 410)
    assert resp.get_json()["code"] == "picture_gone"
    assert "64 lower-case hexadecimal" in check_error(
        client.get("/api/v1/similar?image=../../etc/passwd"), schemas, 400)
    pid = upload(client, RED).get_json()["query"]["image"]["id"]
    kept = tmp_path / "pictures" / f"{pid}.jpg"
    old = time.time() - 8 * 86400  # unused for 8 days: past pictures.keep_days (7)
    os.utime(kept, (old, old))
    check_error(client.get(f"/api/v1/similar?image={pid}"), schemas, 410)
    page = client.get(f"/similar?image={pid}")
    assert page.status_code == 410 and "upload it again" in page.get_data(as_text=True)


def test_the_store_sweeps_old_pictures_and_keeps_within_its_budget(tmp_path):
    store = PictureStore(tmp_path, keep_s=3600, max_bytes=10**9)
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (60, 80, 3), np.uint8) for _ in range(4)]
    ids = [store.put(p) for p in pictures]
    assert ids == [picture_id(p) for p in pictures] and len(set(ids)) == 4
    files = {i: tmp_path / f"{i}.jpg" for i in ids}
    for n, i in enumerate(ids):  # put in order, a minute apart
        t = time.time() - 600 + 60 * n
        os.utime(files[i], (t, t))
    old = time.time() - 7200
    os.utime(files[ids[0]], (old, old))
    sizes = {i: files[i].stat().st_size for i in ids}
    store.max_bytes = sizes[ids[2]] + sizes[ids[3]] + 10
    store.sweep()  # the expired one goes, then the least recently used beyond the budget
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == sorted(
        f"{i}.jpg" for i in ids[2:])
    assert store.get(ids[3], 10**6).pixels.shape == (60, 80, 3)


def test_a_picture_that_cannot_be_kept_still_gets_its_answer(tmp_path, schemas):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the picture folder should be")
    app = _app(tmp_path, dir=blocker / "pictures")
    client = app.test_client()
    body = upload(client, RED).get_json()
    schemas.validate(body, "SimilarShots")
    assert body["query"]["image"]["id"] is None and body["links"] == {}
    assert [h["id"] for h in body["items"]][:2] == ["c1@0", "c1@1"]
    page = upload(client, RED, url="/similar")
    assert page.status_code == 200 and "not kept" in page.get_data(as_text=True)
    off = _app(tmp_path / "off", keep_days=0).test_client()  # keeping turned off
    assert upload(off, RED).get_json()["links"] == {}


def test_the_floor_answers_no_close_match(tmp_path, schemas):
    client = _app(tmp_path, floor=0.999).test_client()
    body = upload(client, picture(colour=(128, 128, 128))).get_json()
    schemas.validate(body, "SimilarShots")
    assert body["items"] == [] and body["no_close_match"] is True
    assert 0 < body["best_similarity"] < 0.999 and body["min_similarity"] == 0.999
    html = client.get(body["links"]["page"]).get_data(as_text=True)
    assert 'id="no-close-match"' in html and "under the floor of 0.999" in html
    near = upload(client, RED).get_json()  # near enough to the city's shots? not at 0.999
    assert near["no_close_match"] is (not near["items"])
    loose = _app(tmp_path / "loose", floor=0.5).test_client()
    body = upload(loose, RED).get_json()
    assert body["items"] and all(h["score"] >= 0.5 for h in body["items"])
    assert body["no_close_match"] is False


def test_the_embedder_is_warmed_in_the_background(tmp_path, monkeypatch):
    built = []

    def slow_build(settings):
        time.sleep(0.3)
        built.append(ColourEmbedder())
        return built[-1]

    monkeypatch.setattr(indexer.embedder, "build_embedder", slow_build)
    settings = web_settings(tmp_path)
    app = create_app(settings, build_catalogue(tmp_path, EMBEDDINGS, MODEL))
    client = app.test_client()
    assert client.get("/api/v1/health").get_json()["embedder"] == "off"
    thread = warm_embedder(app)
    assert thread is not None
    # Pages and searches answer while it loads.
    assert client.get("/?q=dog").status_code == 200
    assert client.get("/api/v1/health").get_json()["embedder"] in ("loading", "ready")
    thread.join(10)
    assert client.get("/api/v1/health").get_json()["embedder"] == "ready"
    assert upload(client, RED).status_code == 200 and len(built) == 1  # built once
    settings.pictures.warm_embedder = False
    cold = create_app(settings, build_catalogue(tmp_path / "cold", EMBEDDINGS, MODEL))
    assert warm_embedder(cold) is None and embedder_state(cold) == "off"
    no_vectors = create_app(web_settings(tmp_path / "plain"),
                            build_catalogue(tmp_path / "plain"))
    assert warm_embedder(no_vectors) is None  # nothing to compare pictures with


@pytest.mark.media
def test_cli_floor_on_the_demo(tmp_path_factory, shared_dir):
    """The real embedder on the demo: a dog (never in the footage) is no close match; a
    frame of the footage finds its shot."""
    data = index_demo(tmp_path_factory, shared_dir)
    env = demo_env(shared_dir)

    def similar(path: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tvindex.cli", "--config", str(REPO / "demo" / "config.yaml"),
             "similar", "image", str(path), "--data-dir", str(data), "--limit", "2", "--json",
             *extra], env=env, capture_output=True, text=True, timeout=300, cwd=REPO,
            check=False)

    dog = similar(shared_dir / "media" / "images" / "dog.jpg")
    assert dog.returncode == 0, dog.stderr
    assert dog.stdout.strip() == "[]" and "no close match" in dog.stderr
    loose = similar(shared_dir / "media" / "images" / "dog.jpg", "--min-similarity", "0.1")
    assert loose.returncode == 0 and '"id"' in loose.stdout
