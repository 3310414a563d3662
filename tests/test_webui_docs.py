"""The API's documentation: the docs page (``/api/docs``, Swagger UI from this server only,
under the site's CSP) and the OpenAPI document it shows (valid per openapi-spec-validator,
tagged, with examples that validate against their schemas, the media/thumbnail/poster URLs
documented as they are served). The page in a real browser: ``tests/test_webui_browser.py``."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from test_webui_catalogue import ApiSchemas, build_catalogue, web_settings

from webui import create_app
from webui.app import CSP
from webui.docs import ASSETS


@pytest.fixture()
def app(tmp_path: Path) -> Flask:
    return create_app(web_settings(tmp_path), build_catalogue(tmp_path))


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def document(client: FlaskClient) -> dict:
    return client.get("/api/v1/openapi.json").get_json()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts += 1


def parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method != "servers":
                yield path, method, op


# --- the page --------------------------------------------------------------------------------

def test_docs_page_loads_swagger_ui_from_this_server_under_the_site_csp(client):
    resp = client.get("/api/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert resp.headers["Content-Security-Policy"] == CSP  # not relaxed for this page
    page = parse(resp.get_data(as_text=True))
    assert page.inline_scripts == 0
    scripts = [a["src"] for t, a in page.tags if t == "script"]
    names = [u.partition("?")[0] for u in scripts]  # static URLs may carry a version
    assert "/api/docs/assets/swagger-ui-bundle.js" in names
    assert "/static/api-docs.js" in names
    loaded = scripts + [a["href"] for t, a in page.tags if t == "link"]
    assert all(u and u.startswith("/") and not u.startswith("//") for u in loaded), loaded
    root = next(a for t, a in page.tags if a.get("id") == "swagger-ui")
    assert root["data-spec"] == "/api/v1/openapi.json"
    for url in scripts + [a["href"] for t, a in page.tags if t == "link"]:
        assert client.get(url).status_code == 200, url


def test_docs_assets_are_the_packaged_swagger_ui_and_nothing_else(client):
    js = client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and js.mimetype in ("text/javascript", "application/javascript")
    assert b"SwaggerUIBundle" in js.get_data()
    css = client.get("/api/docs/assets/swagger-ui.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert ASSETS == {"swagger-ui-bundle.js", "swagger-ui.css"}
    for name in ("index.html", "oauth2-redirect.html", "swagger-initializer.js", "VERSION",
                 "..%2fflask_swagger_ui.py", "nothing.js"):
        assert client.get(f"/api/docs/assets/{name}").status_code == 404, name


def test_our_start_up_script_turns_off_the_public_validator(client):
    body = client.get("/static/api-docs.js").get_data(as_text=True)
    assert "validatorUrl: null" in body and "http" not in body


def test_the_api_link_opens_the_docs_page(client):
    page = parse(client.get("/").get_data(as_text=True))
    nav = [a for t, a in page.tags if t == "a" and a.get("href") == "/api/docs"]
    assert nav, "no link to /api/docs"
    docs = parse(client.get("/api/docs").get_data(as_text=True))
    current = [a for t, a in docs.tags if t == "a" and a.get("aria-current") == "page"]
    assert [a["href"] for a in current] == ["/api/docs"]


# --- the document ----------------------------------------------------------------------------

def test_the_document_validates_with_openapi_spec_validator(document):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)  # raises on the first problem


def test_every_operation_has_one_declared_tag_and_every_tag_is_used(document):
    declared = [t["name"] for t in document["tags"]]
    assert len(declared) == len(set(declared))
    used = set()
    for path, method, op in operations(document):
        assert len(op.get("tags", [])) == 1, (method, path)
        assert op["tags"][0] in declared, (method, path, op["tags"])
        used.add(op["tags"][0])
    assert used == set(declared)


def test_response_examples_validate_against_their_schemas(document):
    schemas = ApiSchemas(document)
    checked = set()
    for _, _, op in operations(document):
        for resp in op["responses"].values():
            media = resp.get("content", {}).get("application/json", {})
            for example in media.get("examples", {}).values():
                name = media["schema"]["$ref"].rsplit("/", 1)[-1]
                schemas.validate(example["value"], name)
                checked.add(name)
    assert {"SearchPage", "Health", "Episode", "Shot"} <= checked


def test_parameter_examples_validate_and_the_main_ones_have_one(document):
    with_example = set()
    for path, method, op in operations(document):
        for param in op.get("parameters", []):
            if "example" in param:
                errors = list(Draft202012Validator(param["schema"]).iter_errors(
                    param["example"]))
                assert not errors, (path, param["name"], errors[0].message)
                with_example.add(param["name"])
    assert {"q", "programme_id", "episode_id", "shot_id", "index", "Range"} <= with_example


def _url(path: str, op: dict) -> str:
    values = {p["name"]: p["example"] for p in op["parameters"] if p["in"] == "path"}
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), path)


def test_media_thumbnail_and_poster_urls_are_documented_as_served(app, client, document):
    media_rules = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule)
                   for r in app.url_map.iter_rules() if r.endpoint.startswith("media.")}
    documented = {p for p, item in document["paths"].items()
                  if [s["url"] for s in item.get("servers", [])] == ["/"]}
    assert media_rules == documented and len(documented) == 4
    for path in documented:
        op = document["paths"][path]["get"]
        assert op["tags"] == ["media"]
        resp = client.get(_url(path, op))
        assert str(resp.status_code) in op["responses"], (path, resp.status_code)
        assert resp.mimetype in op["responses"][str(resp.status_code)]["content"] or (
            path.startswith("/media/") and resp.mimetype.startswith("video/")), resp.mimetype
        missing = client.get(_url(path, op).replace("bd1", "nope").replace("beach-dogs", "nope"))
        assert missing.status_code == 404 and missing.mimetype == "text/html"
    media = document["paths"]["/media/{episode_id}"]["get"]
    ranged = client.get("/media/bd1", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and "206" in media["responses"]
    assert ranged.headers["Content-Range"] == "bytes 0-99/16384"
    beyond = client.get("/media/bd1", headers={"Range": "bytes=99999-"})
    assert beyond.status_code == 416 and "416" in media["responses"]
