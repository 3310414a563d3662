"""Recommendations in the API and the UI: similar programmes, episodes and shots, and query by
example (``POST /api/v1/similar`` and the search page's upload form).

Most tests run on the hand-built catalogue of ``test_webui_catalogue`` with made-up shot
embeddings and a stand-in embedder (a picture's mean colour), so that every validation path
of the upload is checked in milliseconds; the ``media`` tests at the end run on the demo
catalogue indexed from the shared footage with the real taggers, and upload real JPEGs.
Every JSON answer is validated against the served OpenAPI document."""

from __future__ import annotations

import io
import json
import struct
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from test_webui_catalogue import (
    REPO,
    ApiSchemas,
    build_catalogue,
    demo_env,
    index_demo,
    serve_in_thread,
    web_settings,
)
from test_webui_pages import parse
from werkzeug.test import EnvironBuilder, run_wsgi_app

from search.backends.sqlite.store import SqliteStore
from search.recommend import Recommender
from search.vector_catalogue import VectorCatalogue
from tvindex.settings import load_settings
from webui import create_app
from webui.example import MAX_SIDE, decode_image

MODEL = "fake-embedder:test"
DIM = 8


def unit(*values: float) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[:len(values)] = values
    return v / np.linalg.norm(v)


# Shot embeddings: beaches are blue (dim 2), dogs' days green (dim 1), the city red (dim 0);
# the small tails make every pair distinct, so that the order is never a tie.
EMBEDDINGS = {
    "bd1@0": unit(0.1, 0.2, 1.0, 0.10), "bd1@1": unit(0.2, 0.3, 1.0, 0.0, 0.10),
    "bd2@0": unit(0.1, 0.1, 1.0, 0.05), "dd1@0": unit(0.2, 1.0, 0.5, 0.0, 0.0, 0.1),
    "dd1@1": unit(0.1, 1.0, 0.2, 0.0, 0.0, 0.0, 0.1),
    "c1@0": unit(1.0, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0, 0.1), "c1@1": unit(1.0, 0.3, 0.1),
}


class ColourEmbedder:
    """Stands in for the embedding tagger: a picture's mean colour, in the first three
    dimensions. Records the shape of every picture it is given."""

    def __init__(self, model: str = MODEL) -> None:
        self.model = model
        self.shapes: list[tuple[int, ...]] = []

    def identity(self) -> str:
        return self.model

    def predict_with_embeddings(self, frames):
        out = np.zeros((len(frames), DIM), np.float32)
        for i, frame in enumerate(frames):
            assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
            self.shapes.append(frame.shape)
            out[i, :3] = frame.reshape(-1, 3).mean(axis=0) / 255.0
            out[i, 3] = 0.01
        return {}, out


# --- pictures --------------------------------------------------------------------------------

def picture(fmt: str = "JPEG", colour=(220, 30, 30), size=(64, 36), mode: str = "RGB",
            **save) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, fmt, **save)
    return buf.getvalue()


def noise_jpeg(size=(400, 300), seed: int = 0) -> bytes:
    """A JPEG that does not compress: its size grows with its pixels."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(
        buf, "JPEG", quality=95)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_claiming(width: int, height: int) -> bytes:
    """A decompression bomb's shape: a valid PNG header that claims width x height 8-bit grey
    pixels, with one compressed row of zeros behind it (a few hundred bytes in all)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1), 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def jpeg_with_orientation(size=(64, 32), orientation: int = 6) -> bytes:
    im = Image.new("RGB", size, (10, 200, 10))
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture()
def store(tmp_path: Path) -> SqliteStore:
    return build_catalogue(tmp_path, EMBEDDINGS, MODEL)


@pytest.fixture()
def embedder() -> ColourEmbedder:
    return ColourEmbedder()


def make_app(tmp_path: Path, store: SqliteStore, embedder=None, **server) -> Flask:
    settings = web_settings(tmp_path, **server)
    # The stand-in colour embedder's similarities are not the real embedder's: no floor here
    # (the floor is tested in test_pictures.py and on the demo below).
    settings.pictures.min_similarity = None
    app = create_app(settings, store)
    if embedder is not None:
        app.extensions["tvindex"].use_recommender(
            Recommender(store, VectorCatalogue(store, tmp_path / "vectors"), embedder=embedder))
    return app


@pytest.fixture()
def app(tmp_path: Path, store: SqliteStore, embedder: ColourEmbedder) -> Flask:
    return make_app(tmp_path, store, embedder)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def plain_client(tmp_path: Path) -> FlaskClient:
    """The hand-built catalogue without embeddings, with the app's own recommender."""
    root = tmp_path / "plain"
    return create_app(web_settings(root), build_catalogue(root)).test_client()


@pytest.fixture()
def schemas(client: FlaskClient) -> ApiSchemas:
    return ApiSchemas(client.get("/api/v1/openapi.json").get_json())


def get_ok(client: FlaskClient, schemas: ApiSchemas, url: str, schema: str) -> dict:
    resp = client.get(url)
    assert resp.status_code == 200, (url, resp.get_data(as_text=True))
    body = resp.get_json()
    schemas.validate(body, schema)
    return body


def check_error(resp, schemas: ApiSchemas, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    schemas.validate(body, "Error")
    assert body["status"] == body["error"]["status"] == status
    assert body["detail"] == body["error"]["message"]
    return body["detail"]


def upload(client: FlaskClient, data: bytes, filename: str = "example.jpg",
           field: str = "image", url: str = "/api/v1/similar", **kw):
    return client.post(url, data={field: (io.BytesIO(data), filename)},
                       content_type="multipart/form-data", **kw)


def post_ok(client: FlaskClient, schemas: ApiSchemas, data: bytes, url: str = "/api/v1/similar",
            **kw) -> dict:
    resp = upload(client, data, url=url, **kw)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    schemas.validate(body, "SimilarShots")
    return body


# --- the app's recommender -------------------------------------------------------------------

def test_one_recommender_per_app_built_lazily_and_thread_safely(tmp_path, store):
    app = make_app(tmp_path, store)
    context = app.extensions["tvindex"]
    assert context._recommender is None  # nothing is built before the first use
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: context.recommender(), range(32)))
    assert all(r is made[0] for r in made)
    client = app.test_client()
    client.get("/api/v1/programmes/beach-dogs/similar")
    client.get("/programmes/beach-dogs")
    assert context.recommender() is made[0]
    other = make_app(tmp_path / "other", build_catalogue(tmp_path / "other"))
    assert other.extensions["tvindex"].recommender() is not made[0]


def test_concurrent_requests_agree(app, client):
    urls = ["/api/v1/programmes/beach-dogs/similar", "/api/v1/episodes/bd1/similar",
            "/api/v1/shots/bd1@0/similar"]
    expected = {u: client.get(u).get_json() for u in urls}
    data = picture()
    with serve_in_thread(app, threads=4) as base:
        def fetch(i: int):
            url = urls[i % len(urls)]
            with urllib.request.urlopen(base + url, timeout=20) as resp:
                return url, resp.status, resp.read()

        def post(_: int):
            boundary = "b0undary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                    f"filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + data \
                + f"\r\n--{boundary}--\r\n".encode()
            req = urllib.request.Request(
                base + "/api/v1/similar", data=body, method="POST",
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, resp.read()

        with ThreadPoolExecutor(6) as pool:
            gets = list(pool.map(fetch, range(24)))
            posts = list(pool.map(post, range(8)))

    for url, status, raw in gets:
        assert status == 200 and json.loads(raw) == expected[url]
    assert len({raw for _, raw in posts}) == 1 and all(s == 200 for s, _ in posts)


# --- similar programmes and episodes ---------------------------------------------------------

def test_similar_programmes_blend_embeddings_and_labels(client, schemas):
    body = get_ok(client, schemas, "/api/v1/programmes/beach-dogs/similar", "Similar")
    assert body["method"] == "blend-embedding-label-profile"
    assert body["weights"] == {"embedding": 0.7, "label": 0.3}
    ids = [i["id"] for i in body["items"]]
    assert "beach-dogs" not in ids and ids[0] == "dog-days"
    assert "kitchen" not in ids  # nothing indexed, nothing to compare
    for item in body["items"]:
        e, lab = item["embedding_similarity"], item["label_similarity"]
        assert e is not None and lab is not None
        assert item["similarity"] == pytest.approx(0.7 * e + 0.3 * lab, abs=2e-4)
        assert item["links"]["page"] == f"/programmes/{item['id']}"
    sims = [i["similarity"] for i in body["items"]]
    assert sims == sorted(sims, reverse=True)
    assert body == get_ok(client, schemas, "/api/v1/programmes/beach-dogs/similar", "Similar")
    assert len(get_ok(client, schemas, "/api/v1/programmes/beach-dogs/similar?limit=1",
                      "Similar")["items"]) == 1


def test_similar_programmes_without_embeddings_use_labels_only(plain_client):
    schemas = ApiSchemas(plain_client.get("/api/v1/openapi.json").get_json())
    body = get_ok(plain_client, schemas, "/api/v1/programmes/dog-days/similar", "Similar")
    assert body["items"][0]["id"] == "beach-dogs"
    for item in body["items"]:
        assert item["embedding_similarity"] is None
        assert item["similarity"] == item["label_similarity"]


def test_similar_episodes(client, schemas):
    body = get_ok(client, schemas, "/api/v1/episodes/bd1/similar", "SimilarEpisodes")
    ids = [i["id"] for i in body["items"]]
    assert "bd1" not in ids and ids[0] == "bd2" and set(ids) == {"bd2", "dd1", "c1"}
    first = body["items"][0]
    assert first["programme_id"] == "beach-dogs" and first["title"] == "Two"
    assert first["links"] == {"self": "/api/v1/episodes/bd2", "page": "/episodes/bd2",
                              "thumbnail": "/posters/episodes/bd2.jpg"}
    assert body == get_ok(client, schemas, "/api/v1/episodes/bd1/similar", "SimilarEpisodes")
    assert get_ok(client, schemas, "/api/v1/episodes/k1/similar",
                  "SimilarEpisodes")["items"] == []  # pending: nothing to compare
    episode = get_ok(client, schemas, "/api/v1/episodes/bd1", "Episode")
    assert episode["links"]["similar"] == "/api/v1/episodes/bd1/similar"


# --- similar shots ---------------------------------------------------------------------------

def test_similar_shots_exclude_the_shot_itself(client, schemas):
    body = get_ok(client, schemas, "/api/v1/shots/bd1@0/similar", "SimilarShots")
    ids = [h["id"] for h in body["items"]]
    assert "bd1@0" not in ids and len(ids) == 6
    assert ids[:2] == ["bd2@0", "bd1@1"]  # the other beaches first
    assert body["query"] == {"kind": "shot", "shot_id": "bd1@0", "exclude_episode": False,
                             "image": None}
    assert body["method"] == "cosine-embedding" and body["model"] == MODEL
    scores = [h["score"] for h in body["items"]]
    assert scores == sorted(scores, reverse=True)
    hit = body["items"][0]
    assert hit["level"] == "shot" and hit["episode_id"] == "bd2"
    assert hit["links"] == {"self": "/api/v1/shots/bd2@0", "page": "/episodes/bd2?shot=0",
                            "thumbnail": "/thumbnails/bd2/0.jpg",
                            "similar": "/api/v1/shots/bd2@0/similar"}
    assert client.get(hit["links"]["thumbnail"]).status_code == 200
    assert body == get_ok(client, schemas, "/api/v1/shots/bd1@0/similar", "SimilarShots")
    shot = get_ok(client, schemas, "/api/v1/shots/bd1@0", "Shot")
    assert shot["links"]["similar"] == "/api/v1/shots/bd1@0/similar"


def test_similar_shots_can_leave_out_the_episode(client, schemas):
    body = get_ok(client, schemas, "/api/v1/shots/bd1@0/similar?exclude_episode=true&limit=3",
                  "SimilarShots")
    ids = [h["id"] for h in body["items"]]
    assert ids[0] == "bd2@0" and len(ids) == 3 and not any(i.startswith("bd1@") for i in ids)
    assert body["query"]["exclude_episode"] is True
    off = get_ok(client, schemas, "/api/v1/shots/bd1@0/similar?exclude_episode=false",
                 "SimilarShots")
    assert "bd1@1" in [h["id"] for h in off["items"]]


@pytest.mark.parametrize(("url", "status", "needle"), [
    ("/api/v1/shots/bd1@0/similar?exclude_episode=maybe", 400,
     "exclude_episode must be true or false"),
    ("/api/v1/shots/bd1@0/similar?limit=0", 400, "limit must be between 1 and 100"),
    ("/api/v1/shots/bd1@0/similar?limit=101", 400, "limit must be between 1 and 100"),
    ("/api/v1/episodes/bd1/similar?limit=x", 400, "limit must be an integer"),
    ("/api/v1/shots/bd1@9/similar", 404, "unknown shot 'bd1@9'"),
    ("/api/v1/shots/nope@0/similar", 404, "unknown episode 'nope'"),
    ("/api/v1/shots/bd1/similar", 404, "not a shot id"),
    ("/api/v1/episodes/nope/similar", 404, "unknown episode 'nope'"),
    ("/api/v1/programmes/nope/similar", 404, "unknown programme 'nope'"),
])
def test_bad_requests_for_similar_items(client, schemas, url, status, needle):
    assert needle in check_error(client.get(url), schemas, status)


def test_catalogue_without_embeddings_is_409(plain_client):
    schemas = ApiSchemas(plain_client.get("/api/v1/openapi.json").get_json())
    message = check_error(plain_client.get("/api/v1/shots/bd1@0/similar"), schemas, 409)
    assert "has no embedding" in message and "taggers.embedding" in message
    message = check_error(upload(plain_client, picture()), schemas, 409)
    assert "the catalogue has no embeddings" in message


def test_embedder_of_another_model_is_409(tmp_path, store, schemas):
    client = make_app(tmp_path, store, ColourEmbedder("other-model:2")).test_client()
    message = check_error(upload(client, picture()), schemas, 409)
    assert f"embedded by {MODEL}" in message and "other-model:2" in message


# --- query by example: the API ---------------------------------------------------------------

def test_a_red_picture_finds_the_city(client, schemas, embedder):
    body = post_ok(client, schemas, picture(colour=(230, 20, 20)), query_string={"limit": 3})
    assert [h["id"] for h in body["items"]][:2] == ["c1@0", "c1@1"]
    assert len(body["items"]) == 3
    assert body["query"] == {"kind": "image", "shot_id": None, "exclude_episode": False,
                             "image": {"format": "JPEG", "width": 64, "height": 36,
                                       "bytes": len(picture(colour=(230, 20, 20))),
                                       "id": body["query"]["image"]["id"]}}
    assert len(body["query"]["image"]["id"]) == 64  # kept by content: see test_pictures.py
    assert embedder.shapes == [(36, 64, 3)]
    blue = post_ok(client, schemas, picture("PNG", colour=(10, 40, 240)))
    assert blue["items"][0]["id"].startswith(("bd1@", "bd2@"))


@pytest.mark.parametrize(("fmt", "mode", "colour", "save"), [
    ("PNG", "RGBA", (230, 20, 20, 255), {}),
    ("PNG", "LA", (200, 255), {}),
    ("PNG", "I;16", 40000, {}),
    ("PNG", "P", 3, {"transparency": 0}),
    ("GIF", "P", 5, {}),
    ("WEBP", "RGB", (230, 20, 20), {}),
    ("BMP", "RGB", (230, 20, 20), {}),
    ("JPEG", "L", 128, {}),
    ("JPEG", "CMYK", (0, 200, 200, 0), {}),
])
def test_every_accepted_format_and_mode(client, schemas, embedder, fmt, mode, colour, save):
    body = post_ok(client, schemas, picture(fmt, colour, mode=mode, **save))
    assert body["query"]["image"]["format"] == fmt and body["items"]
    assert embedder.shapes == [(36, 64, 3)]


def test_exif_orientation_is_applied(client, schemas, embedder):
    post_ok(client, schemas, jpeg_with_orientation((64, 32), 6))
    assert embedder.shapes == [(64, 32, 3)]  # rotated upright: 32 wide, 64 high


def test_large_pictures_are_scaled_down(client, schemas, embedder):
    body = post_ok(client, schemas, picture("PNG", size=(3000, 1500)))
    assert body["query"]["image"]["width"] == 3000
    assert embedder.shapes == [(MAX_SIDE // 2, MAX_SIDE, 3)]


def test_a_shot_as_the_example(client, schemas):
    resp = client.post("/api/v1/similar?limit=2", json={"shot": "c1@0"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    schemas.validate(body, "SimilarShots")
    assert body["items"][0]["id"] == "c1@1" and len(body["items"]) == 2
    assert body["query"]["kind"] == "shot" and body["query"]["shot_id"] == "c1@0"
    resp = client.post("/api/v1/similar?exclude_episode=true", json={"shot": "c1@0"})
    assert not any(h["episode_id"] == "c1" for h in resp.get_json()["items"])
    form = client.post("/api/v1/similar?limit=2", data={"shot": "c1@0"})
    assert form.get_json() == body


def test_text_file_is_415(client, schemas):
    message = check_error(upload(client, b"hello, this is not a picture\n" * 20, "notes.txt"),
                          schemas, 415)
    assert "not an image" in message and "JPEG, PNG" in message


def test_other_image_formats_are_415(client, schemas):
    tiff = picture("TIFF")
    assert Image.open(io.BytesIO(tiff)).format == "TIFF"  # a picture, but not one we take
    check_error(upload(client, tiff, "a.tiff"), schemas, 415)
    check_error(upload(client, b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n", "a.pdf"), schemas, 415)


def test_other_request_bodies_are_415(client, schemas):
    resp = client.post("/api/v1/similar", data=picture(), content_type="image/jpeg")
    assert "unsupported request content type 'image/jpeg'" in check_error(resp, schemas, 415)


def test_truncated_jpeg_is_400(client, schemas):
    data = noise_jpeg((200, 150))
    message = check_error(upload(client, data[: len(data) // 2]), schemas, 400)
    assert "truncated or corrupt" in message


def test_corrupt_png_is_400(client, schemas):
    data = bytearray(picture("PNG", size=(300, 200), colour=(1, 2, 3)))
    data[60:80] = b"\xff" * 20  # inside the compressed pixels
    check_error(upload(client, bytes(data), "a.png"), schemas, 400)


@pytest.mark.parametrize(("kw", "needle"), [
    ({"data": {"picture": (io.BytesIO(picture()), "a.jpg")},
      "content_type": "multipart/form-data"}, "the image is missing"),
    ({"data": {"image": (io.BytesIO(b""), "")}, "content_type": "multipart/form-data"},
     "the image is missing"),
    ({"data": {"image": (io.BytesIO(b""), "empty.jpg")},
      "content_type": "multipart/form-data"}, "the image is empty"),
    ({}, "the image is missing"),
    ({"json": {"shots": "c1@0"}}, "shot is required"),
    ({"json": ["c1@0"]}, "not a JSON object"),
    ({"data": b"{not json", "content_type": "application/json"}, "not a JSON object"),
    ({"json": {"shot": "c1"}}, "not a shot id"),
    ({"json": {"shot": 3}}, "shot must be a shot id"),
])
def test_missing_or_malformed_examples_are_400(client, schemas, kw, needle):
    assert needle in check_error(client.post("/api/v1/similar", **kw), schemas, 400)


def test_unknown_example_shot_is_404(client, schemas):
    resp = client.post("/api/v1/similar", json={"shot": "c1@7"})
    assert "unknown shot 'c1@7'" in check_error(resp, schemas, 404)


def test_bad_limit_is_400(client, schemas):
    check_error(upload(client, picture(), query_string={"limit": "0"}), schemas, 400)


def test_get_needs_a_kept_picture(client, schemas):
    assert "image is required" in check_error(client.get("/api/v1/similar"), schemas, 400)
    check_error(client.put("/api/v1/similar"), schemas, 405)


# --- query by example: the limits ------------------------------------------------------------

def test_uploads_have_their_own_body_limit(tmp_path, store, embedder):
    """server.max_request_bytes (64 KiB by default) bounds every other request; the upload
    routes take up to server.max_upload_bytes instead, and only they do."""
    app = make_app(tmp_path, store, embedder, max_request_bytes=65536,
                   max_upload_bytes=1024 * 1024)
    client = app.test_client()
    schemas = ApiSchemas(client.get("/api/v1/openapi.json").get_json())
    big = noise_jpeg((600, 400))
    assert 65536 < len(big) < 1024 * 1024
    post_ok(client, schemas, big)
    assert upload(client, big, url="/similar").status_code == 303  # the page route too
    other = client.post("/api/v1/episodes/bd1/reindex", data=big,
                        content_type="application/octet-stream")
    assert "server.max_request_bytes" in check_error(other, schemas, 413)
    form = client.post("/?q=x", data={"image": (io.BytesIO(big), "a.jpg")},
                       content_type="multipart/form-data")
    assert form.status_code == 413  # another route: the small limit


def test_oversized_upload_is_413(tmp_path, store, embedder, schemas):
    client = make_app(tmp_path, store, embedder, max_upload_bytes=4096).test_client()
    data = noise_jpeg((200, 150))
    assert len(data) > 4096
    message = check_error(upload(client, data), schemas, 413)
    assert "server.max_upload_bytes" in message
    assert upload(client, picture()).status_code == 200  # small ones still pass
    resp = upload(client, data, url="/similar")
    assert resp.status_code == 413 and resp.mimetype == "text/html"


def test_oversized_upload_without_a_length_is_413(tmp_path, store, embedder, schemas):
    """A chunked body has no Content-Length: the limit applies while it is read. (Servers
    that de-chunk a body, waitress among them, mark where it ends with wsgi.input_terminated.)
    """
    app = make_app(tmp_path, store, embedder, max_upload_bytes=4096)
    boundary = "XyZ"
    for data, status in ((noise_jpeg((200, 150)), 413), (picture(), 200)):
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                f"filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() \
            + data + f"\r\n--{boundary}--\r\n".encode()
        environ = EnvironBuilder(
            "/api/v1/similar", method="POST", input_stream=io.BytesIO(body),
            content_type=f"multipart/form-data; boundary={boundary}").get_environ()
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
        chunks, status_line, _ = run_wsgi_app(app, environ, buffered=True)
        assert int(status_line.split()[0]) == status
        schemas.validate(json.loads(b"".join(chunks)),
                         "Error" if status == 413 else "SimilarShots")


def test_decompression_bomb_is_413_before_decoding(client, schemas, embedder):
    bomb = png_claiming(100_000, 100_000)
    assert len(bomb) < 1000
    message = check_error(upload(client, bomb, "bomb.png"), schemas, 413)
    assert "pixels" in message and "server.max_upload_pixels" in message
    assert embedder.shapes == []


def test_pixel_limit_is_checked_from_the_header(tmp_path, store, embedder, schemas):
    client = make_app(tmp_path, store, embedder, max_upload_pixels=10_000).test_client()
    message = check_error(upload(client, png_claiming(20_000, 20_000), "a.png"), schemas, 413)
    assert "400000000 pixels" in message and "server.max_upload_pixels" in message
    message = check_error(upload(client, png_claiming(5_000, 5_000), "a.png"), schemas, 413)
    assert "5000 x 5000 = 25000000 pixels, over the limit of 10000" in message
    over = picture("PNG", size=(101, 100))
    message = check_error(upload(client, over, "a.png"), schemas, 413)
    assert "101 x 100 = 10100 pixels, over the limit of 10000" in message
    post_ok(client, schemas, picture("PNG", size=(100, 100)))


def test_decode_checks_the_size_before_loading(monkeypatch):
    loaded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loaded.append(self) or None)
    from werkzeug.exceptions import RequestEntityTooLarge
    with pytest.raises(RequestEntityTooLarge):
        decode_image(png_claiming(30_000, 30_000), 40_000_000)
    assert loaded == []


def test_uploads_never_touch_the_disk(client, schemas, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an upload was written to a temporary file")

    for name in ("TemporaryFile", "SpooledTemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    post_ok(client, schemas, noise_jpeg((700, 500)))  # over werkzeug's 500 KB spool size


def test_every_route_is_documented_with_its_errors(schemas):
    paths = schemas.document["paths"]
    post = paths["/similar"]["post"]
    assert set(post["responses"]) == {"200", "400", "404", "409", "413", "415"}
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert "application/json" in post["requestBody"]["content"]
    shots = paths["/shots/{shot_id}/similar"]["get"]
    assert {p["name"] for p in shots["parameters"]} == {"shot_id", "limit", "exclude_episode"}
    assert "409" in shots["responses"]
    blend = paths["/programmes/{programme_id}/similar"]["get"]["description"]
    assert "(we * embedding_similarity + wl * label_similarity) / (we + wl)" in blend
    assert "/episodes/{episode_id}/similar" in paths


# --- the pages -------------------------------------------------------------------------------

def test_search_page_has_the_upload_form(client):
    resp = client.get("/")
    doc = parse(resp.get_data(as_text=True))
    (form,) = doc.find("form", id="upload-form")
    assert form["method"] == "post" and form["action"] == "/similar"
    assert form["enctype"] == "multipart/form-data"
    assert int(form["data-max-bytes"]) == 8 * 1024 * 1024
    (field,) = doc.find("input", type="file", name="image")
    assert "image/jpeg" in field["accept"] and "image/png" in field["accept"]


def test_every_shot_has_a_find_similar_action(client):
    doc = parse(client.get("/?q=object:dog").get_data(as_text=True))
    hits = [a["data-hit-id"] for _, a in doc.by_class("hit")]
    actions = [a["href"] for _, a in doc.by_class("similar-action")]
    assert actions == [f"/similar?shot={h}" for h in hits]
    doc = parse(client.get("/episodes/bd1?shot=1").get_data(as_text=True))
    actions = [a["href"] for _, a in doc.by_class("similar-action")]
    assert actions == ["/similar?shot=bd1@0", "/similar?shot=bd1@1"]
    assert doc.find("a", id="current-similar")[0]["href"] == "/similar?shot=bd1@1"
    # Episode and programme hits have no such action.
    doc = parse(client.get("/?q=object:dog&level=episode").get_data(as_text=True))
    assert not doc.by_class("similar-action")


def test_similar_shots_page(client):
    resp = client.get("/similar?shot=bd1@0")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    doc = parse(html)
    hits = [a["data-hit-id"] for _, a in doc.by_class("hit")]
    assert hits[:2] == ["bd2@0", "bd1@1"] and "bd1@0" not in hits and len(hits) == 6
    assert "/thumbnails/bd1/0.jpg" in [i["src"] for i in doc.find("img")]  # the example
    assert "/thumbnails/bd2/0.jpg" in [i["src"] for i in doc.find("img")]
    assert "Beach Dogs" in html and "6</strong> similar shots" in html
    (toggle,) = doc.find("a", id="toggle-episode")
    doc = parse(client.get(toggle["href"]).get_data(as_text=True))
    assert not [h for _, a in doc.by_class("hit") if (h := a["data-hit-id"]).startswith("bd1@")]
    assert doc.find("form", id="upload-form")


def test_similar_page_without_an_example(client):
    resp = client.get("/similar")
    assert resp.status_code == 200
    assert "Pick an example" in resp.get_data(as_text=True)


@pytest.mark.parametrize(("url", "status", "needle"), [
    ("/similar?shot=bd1@9", 404, "has no shot 9"),
    ("/similar?shot=nope@0", 404, "unknown episode"),
    ("/similar?shot=bd1", 400, "not a shot id"),
])
def test_similar_page_errors(client, url, status, needle):
    resp = client.get(url)
    assert resp.status_code == status and resp.mimetype == "text/html"
    assert needle in resp.get_data(as_text=True)


def test_similar_page_without_embeddings_says_why(plain_client):
    resp = plain_client.get("/similar?shot=bd1@0")
    assert resp.status_code == 409
    html = resp.get_data(as_text=True)
    assert "has no embedding" in html and 'role="alert"' in html


def test_upload_form_posts_to_the_results_page(client):
    resp = upload(client, picture(colour=(230, 20, 20)), url="/similar",
                  follow_redirects=True)  # to the shareable /similar?image=ID
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    doc = parse(html)
    hits = [a["data-hit-id"] for _, a in doc.by_class("hit")]
    assert hits[:2] == ["c1@0", "c1@1"]
    previews = [i["src"] for i in doc.find("img") if i["src"].startswith("data:image/jpeg")]
    assert len(previews) == 1  # the picture is shown back inline
    assert "JPEG picture" in html and "64 × 36 pixels" in html


@pytest.mark.parametrize(("data", "status", "needle"), [
    (b"just text", 415, "not an image"),
    (png_claiming(100_000, 100_000), 413, "pixels"),
])
def test_upload_form_errors_show_on_the_page(client, data, status, needle):
    resp = upload(client, data, url="/similar")
    assert resp.status_code == status and resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert needle in html and 'id="upload-form"' in html


def test_programme_page_lists_similar_programmes(client):
    resp = client.get("/programmes/beach-dogs")
    doc = parse(resp.get_data(as_text=True))
    html = resp.get_data(as_text=True)
    similar = html[html.index('id="similar"'):]
    assert similar.index("/programmes/dog-days") < similar.index("/programmes/city")
    cards = [a for a in doc.find("a") if a.get("data-similarity")]
    assert cards[0]["href"] == "/programmes/dog-days"
    sims = [float(c["data-similarity"]) for c in cards]
    assert sims == sorted(sims, reverse=True)
    assert "pictures 0." in similar and "labels 0." in similar
    assert "/programmes/beach-dogs" not in [c["href"] for c in cards]


# --- the demo catalogue, indexed from the shared footage with the real taggers ---------------

@pytest.fixture(scope="module")
def demo_client(tmp_path_factory: pytest.TempPathFactory,
                shared_dir: Path) -> Iterator[FlaskClient]:
    data = index_demo(tmp_path_factory, shared_dir)
    env = demo_env(shared_dir)
    settings = load_settings(REPO / "demo" / "config.yaml", {"paths.data_dir": str(data)},
                             environ={k: v for k, v in env.items() if k.startswith("TVINDEX")})
    app = create_app(settings)
    if app.extensions["tvindex"].store.embedding_model() is None:
        pytest.skip("the demo catalogue has no embeddings (no embedding tagger is active)")
    yield app.test_client()
    from webui.app import close_app

    close_app(app)


@pytest.fixture(scope="module")
def demo_schemas(demo_client: FlaskClient) -> ApiSchemas:
    return ApiSchemas(demo_client.get("/api/v1/openapi.json").get_json())


@pytest.mark.media
def test_demo_similar_programmes(demo_client, demo_schemas):
    body = get_ok(demo_client, demo_schemas, "/api/v1/programmes/ciutat-en-bici/similar",
                  "Similar")
    ids = [i["id"] for i in body["items"]]
    assert "ciutat-en-bici" not in ids and len(ids) == 4
    assert all(i["embedding_similarity"] is not None for i in body["items"])
    assert body == get_ok(demo_client, demo_schemas,
                          "/api/v1/programmes/ciutat-en-bici/similar", "Similar")
    body = get_ok(demo_client, demo_schemas, "/api/v1/episodes/bici-01/similar",
                  "SimilarEpisodes")
    assert "bici-01" not in [i["id"] for i in body["items"]]
    html = demo_client.get("/programmes/ciutat-en-bici").get_data(as_text=True)
    assert html.count("data-similarity=") == 4


@pytest.mark.media
def test_demo_similar_shots(demo_client, demo_schemas):
    body = get_ok(demo_client, demo_schemas, "/api/v1/shots/bici-02@1/similar?limit=5",
                  "SimilarShots")
    ids = [h["id"] for h in body["items"]]
    assert len(ids) == 5 and "bici-02@1" not in ids
    assert all(-1 <= h["score"] <= 1 for h in body["items"])
    page = demo_client.get("/similar?shot=bici-02@1")
    assert page.status_code == 200 and page.get_data(as_text=True).count('class="card hit"') > 0


@pytest.mark.media
def test_demo_query_by_a_frame_finds_its_shot(demo_client, demo_schemas):
    """A shot's own thumbnail (its representative frame, as a JPEG from the API) brings the
    shot back among the first few: the upload is embedded like the catalogue's frames."""
    shot = "bici-02@1"
    thumb = demo_client.get(
        get_ok(demo_client, demo_schemas, f"/api/v1/shots/{shot}", "Shot")["links"]["thumbnail"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    body = post_ok(demo_client, demo_schemas, thumb.get_data(), query_string={"limit": 5})
    ids = [h["id"] for h in body["items"]]
    assert shot in ids, ids
    assert body["items"][0]["episode_id"] == "bici-02", ids


@pytest.mark.media
def test_demo_query_by_a_photo(demo_client, demo_schemas, shared_dir):
    """A photo of something the footage never shows (an aeroplane, a dog) is no close match:
    the floor (pictures.min_similarity) leaves the answer empty, and says how near the nearest
    shot came; the page says so too."""
    for name in ("aero1.jpg", "dog.jpg"):
        photo = shared_dir / "media" / "images" / name
        if not photo.exists():
            pytest.skip(f"no shared photo {name}")
        body = post_ok(demo_client, demo_schemas, photo.read_bytes(), query_string={"limit": 4})
        assert body["query"]["image"]["format"] == "JPEG"
        assert body["items"] == [] and body["no_close_match"] is True, body
        assert body["best_similarity"] < body["min_similarity"] == 0.5
        page = upload(demo_client, photo.read_bytes(), url="/similar", follow_redirects=True)
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and 'id="no-close-match"' in html
        assert html.count('class="card hit"') == 0
