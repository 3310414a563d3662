"""The JSON API on a hand-built catalogue: every endpoint, pagination, validation errors as
4xx JSON, the API key, and every response checked against the served OpenAPI document."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_webui_catalogue import API_KEY, XSS_TITLE, ApiSchemas, web_settings

from webui import create_app
from webui.openapi import query_parameters


@pytest.fixture()
def schemas(client: FlaskClient) -> ApiSchemas:
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200 and resp.is_json
    return ApiSchemas(resp.get_json())


def get_ok(client: FlaskClient, schemas: ApiSchemas, url: str, schema: str) -> dict:
    resp = client.get(url)
    assert resp.status_code == 200, (url, resp.get_data(as_text=True))
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    schemas.validate(body, schema)
    return body


def get_error(client: FlaskClient, schemas: ApiSchemas, url: str, status: int,
              method: str = "GET", **kw) -> str:
    resp = client.open(url, method=method, **kw)
    assert resp.status_code == status, (url, resp.status_code, resp.get_data(as_text=True))
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    schemas.validate(body, "Error")
    assert body["status"] == body["error"]["status"] == status
    assert body["detail"] == body["error"]["message"]
    return body["detail"]


# --- the document itself ---------------------------------------------------------------------

def test_openapi_covers_exactly_the_api_routes(app: Flask, schemas: ApiSchemas):
    """Every /api/v1 route and every media/thumbnail/poster route (documented under their
    own server, the root), and nothing else."""
    documented = set()
    for path, ops in schemas.document["paths"].items():
        root = ops["servers"][0]["url"].rstrip("/") if "servers" in ops else "/api/v1"
        for method in ops:
            if method != "servers":
                documented.add((method.upper(), root + path))
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") or rule.endpoint.startswith("media."):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                served.add((method, path))
    assert served == documented


def test_every_ref_in_the_document_resolves(schemas: ApiSchemas):
    doc = schemas.document

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                name = node["$ref"].removeprefix("#/components/schemas/")
                assert name in doc["components"]["schemas"], node["$ref"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert doc["openapi"].startswith("3.")


# --- read endpoints --------------------------------------------------------------------------

def test_health(client, schemas):
    body = get_ok(client, schemas, "/api/v1/health", "Health")
    assert body["status"] == "ok" and body["programmes"] == 4
    assert body["episodes"] == {"total": 5, "indexed": 4, "pending": 1, "failed": 0}


@pytest.mark.parametrize("level", ["shot", "episode", "programme"])
def test_search_every_level(client, schemas, level):
    body = get_ok(client, schemas, f"/api/v1/search?q=object:dog&level={level}", "SearchPage")
    assert body["level"] == level and body["total"] == len(body["hits"]) > 0
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert body["next"] is None and body["next_offset"] is None
    for hit in body["hits"]:
        assert hit["level"] == level
        assert hit["evidence"][0]["label"] == "dog"
        assert set(hit["links"]) == {"self", "page", "thumbnail", "similar"}
        assert client.get(hit["links"]["self"]).status_code == 200
        assert client.get(hit["links"]["thumbnail"]).status_code == 200


def test_search_pagination_follows_next(client, schemas):
    first = get_ok(client, schemas, "/api/v1/search?q=object:person&limit=2", "SearchPage")
    # person is present (some frame >= 0.5) in 4 shots
    assert first["total"] == 4 and len(first["hits"]) == 2 and first["next_offset"] == 2
    seen = [h["id"] for h in first["hits"]]
    url = first["next"]
    while url:
        page = get_ok(client, schemas, url, "SearchPage")
        seen += [h["id"] for h in page["hits"]]
        url = page["next"]
    everything = get_ok(client, schemas, "/api/v1/search?q=object:person&limit=50",
                        "SearchPage")
    assert seen == [h["id"] for h in everything["hits"]]
    assert len(set(seen)) == 4


def test_search_shot_hits_carry_file_times(client, schemas):
    body = get_ok(client, schemas, "/api/v1/search?q=object:bicycle", "SearchPage")
    hit = body["hits"][0]
    assert hit["id"] == "c1@0" and hit["start_s"] == 10.0 and hit["end_s"] == 15.0
    assert hit["links"]["page"] == "/episodes/c1?shot=0"
    assert hit["programme_title"] == f"{XSS_TITLE} City"  # JSON carries data as is


def test_search_filters_and_exclusions(client, schemas):
    body = get_ok(client, schemas,
                  '/api/v1/search?q=object:dog ~object:car programme:"Beach Dogs" '
                  "after:2020-01-01&level=episode", "SearchPage")
    assert [h["id"] for h in body["hits"]] == ["bd1"]
    assert body["query"]["programme_ids"] == ["beach-dogs"]
    assert body["hits"][0]["evidence"][1]["excluded"] is True
    assert body["hits"][0]["evidence"][1]["soft"] is True
    # -object:car is hard: car is present in bd1, so nothing is left
    body = get_ok(client, schemas,
                  '/api/v1/search?q=object:dog -object:car programme:"Beach Dogs" '
                  "after:2020-01-01&level=episode", "SearchPage")
    assert body["hits"] == [] and body["total"] == 0


@pytest.mark.parametrize(("url", "needle"), [
    ("/api/v1/search", "q is required"),
    ("/api/v1/search?q=%20%20", "q is required"),
    ("/api/v1/search?q=dog&level=scene", "level must be one of shot, episode, programme"),
    ("/api/v1/search?q=dog&limit=-1", "limit must be between 1 and 500"),
    ("/api/v1/search?q=dog&limit=0", "limit must be between 1 and 500"),
    ("/api/v1/search?q=dog&limit=10000", "limit must be between 1 and 500"),
    ("/api/v1/search?q=dog&limit=ten", "limit must be an integer"),
    ("/api/v1/search?q=dog&offset=-3", "offset must be between 0"),
    ("/api/v1/search?q=" + "a" * 501, "q is too long: 501 characters (limit 500)"),
    ("/api/v1/search?q=object:dgo", "did you mean: dog"),
    ("/api/v1/search?q=after:2020-13-45", "bad date"),
    ("/api/v1/labels?limit=0", "limit must be between 1 and 500"),
    ("/api/v1/programmes?offset=x", "offset must be an integer"),
    ("/api/v1/programmes/beach-dogs/similar?limit=0", "limit must be between 1 and 100"),
    ("/api/v1/suggest?q=" + "b" * 201, "q is too long"),
])
def test_bad_parameters_are_400_json(client, schemas, url, needle):
    assert needle in get_error(client, schemas, url, 400)


@pytest.mark.parametrize(("url", "needle"), [
    ("/api/v1/search?q=dog&size=2",
     ("unknown query parameter 'size' (did you mean 'limit'?); it takes cursor, ")),
    ("/api/v1/search?q=dog&lmit=2&offest=4&colour=red",
     ("unknown query parameters 'lmit' (did you mean 'limit'?), 'offest' (did you mean "
      "'offset'?), 'colour'")),
    ("/api/v1/search?query=dog", "'query' (did you mean 'q'?)"),
    ("/api/v1/labels?sett=coco80",
     "'sett' (did you mean 'set'?); it takes limit, match, offset, set"),
    ("/api/v1/programmes?page=2", "'page' (did you mean 'offset'?)"),
    ("/api/v1/programmes/beach-dogs?limit=3",
     "unknown query parameter 'limit'; it takes no query parameters"),
    ("/api/v1/health?verbose=1", "'verbose'; it takes no query parameters"),
    ("/api/v1/suggest?q=do&per_page=3", "'per_page' (did you mean 'limit'?)"),
    ("/api/v1/shots/bd1@0/similar?exclude_episodes=true",
     "'exclude_episodes' (did you mean 'exclude_episode'?)"),
    ("/api/v1/episodes/bd1/timeline?shot=1", "unknown query parameter 'shot'"),
])
def test_unknown_query_parameters_are_400_naming_them(client, schemas, url, needle):
    assert needle in get_error(client, schemas, url, 400)


def test_unknown_parameters_checked_before_the_body_and_the_key(client, schemas):
    # POST routes too: the query string is checked before the upload or the API key.
    assert "'limt' (did you mean 'limit'?)" in get_error(
        client, schemas, "/api/v1/similar?limt=3", 400, method="POST")
    assert "unknown query parameter 'force'" in get_error(
        client, schemas, "/api/v1/episodes/bd1/reindex?force=1", 400, method="POST",
        headers={"X-API-Key": API_KEY})
    # HEAD is GET's: the same parameters.
    assert client.head("/api/v1/search?q=dog&size=2").status_code == 400
    assert client.head("/api/v1/search?q=dog&limit=2").status_code == 200


def test_every_api_route_takes_the_parameters_its_document_lists(app: Flask, client):
    """The allowed set comes from the document: every route is checked (none undocumented),
    and each documented query parameter is accepted (no 'unknown' for it)."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            known = query_parameters(rule.rule.removeprefix("/api/v1"), method)
            assert known is not None, (method, rule.rule)
    for extra in ("level=episode", "limit=2", "offset=1"):
        resp = client.get(f"/api/v1/search?q=dog&{extra}")
        assert resp.status_code == 200, (extra, resp.get_json())


def test_pages_keep_ignoring_unknown_parameters(client):
    # Pages are for people: links shared with tracking tags or old bookmarks still open.
    for url in ("/?q=object:dog&size=2", "/programmes?utm_source=mail", "/labels?x=1",
                "/programmes/beach-dogs?ref=home", "/episodes/bd1?t=3"):
        assert client.get(url).status_code == 200, url


def test_query_errors_say_where(client):
    resp = client.get("/api/v1/search?q=dog%20OR")
    assert resp.status_code == 400
    problem = resp.get_json()
    assert problem["code"] == "query_syntax"
    assert "dangling OR" in problem["detail"] and problem["column"] == 5
    err = problem["error"]
    assert "dangling OR" in err["message"] and err["column"] == 5


@pytest.mark.parametrize(("url", "needle"), [
    ("/api/v1/programmes/nope", "unknown programme 'nope'"),
    ("/api/v1/programmes/nope/similar", "unknown programme 'nope'"),
    ("/api/v1/episodes/nope", "unknown episode 'nope'"),
    ("/api/v1/episodes/nope/timeline", "unknown episode 'nope'"),
    ("/api/v1/shots/bd1@9", "episode 'bd1' has no shot 9"),
    ("/api/v1/shots/bd1", "not a shot id"),
    ("/api/v1/shots/bd1@x", "not a shot id"),
    ("/api/v1/shots/nope@0", "unknown episode 'nope'"),
    ("/api/v1/labels?set=nope", "unknown label set 'nope'; available: coco80, places365"),
    ("/api/v1/nothing-here", "no such resource: /api/v1/nothing-here"),
])
def test_unknown_ids_are_404_json(client, schemas, url, needle):
    assert needle in get_error(client, schemas, url, 404)


def test_wrong_method_is_405_json(client, schemas):
    get_error(client, schemas, "/api/v1/search?q=dog", 405, method="POST")
    get_error(client, schemas, "/api/v1/episodes/bd1/reindex", 405)


def test_labels_with_counts_and_pages(client, schemas):
    body = get_ok(client, schemas, "/api/v1/labels", "LabelPage")
    assert body["total"] == 9 and body["next"] is None
    dog = next(i for i in body["items"] if i["name"] == "dog")
    assert dog["label_set"] == "coco80" and dog["episodes"] >= 3 and dog["shots"] >= 4
    only = get_ok(client, schemas, "/api/v1/labels?set=places365&match=BEA", "LabelPage")
    assert [i["name"] for i in only["items"]] == ["beach"]
    page = get_ok(client, schemas, "/api/v1/labels?limit=4&offset=4", "LabelPage")
    assert [i["name"] for i in page["items"]] == [i["name"] for i in body["items"][4:8]]
    assert page["next_offset"] == 8 and "offset=8" in page["next"]


def test_programmes_list_and_detail(client, schemas):
    body = get_ok(client, schemas, "/api/v1/programmes?limit=3", "ProgrammePage")
    assert body["total"] == 4 and len(body["items"]) == 3 and body["next_offset"] == 3
    assert get_ok(client, schemas, body["next"], "ProgrammePage")["items"][0]["id"] == "kitchen"
    prog = get_ok(client, schemas, "/api/v1/programmes/beach-dogs", "Programme")
    assert [e["id"] for e in prog["episodes"]] == ["bd2", "bd1"]  # by air date
    assert prog["top_labels"]["coco80"][0]["label"] == "dog"
    pending = get_ok(client, schemas, "/api/v1/programmes/kitchen", "Programme")
    assert pending["top_labels"] == {} and pending["episodes"][0]["status"] == "pending"


def test_similar_programmes_are_deterministic_and_exclude_itself(client, schemas):
    body = get_ok(client, schemas, "/api/v1/programmes/beach-dogs/similar", "Similar")
    ids = [i["id"] for i in body["items"]]
    assert "beach-dogs" not in ids and ids[0] == "dog-days"  # dogs on beaches, both
    sims = [i["similarity"] for i in body["items"]]
    assert sims == sorted(sims, reverse=True) and all(0 <= s <= 1 for s in sims)
    assert body == get_ok(client, schemas, "/api/v1/programmes/beach-dogs/similar", "Similar")
    assert "kitchen" not in ids  # nothing indexed, nothing to compare
    empty = get_ok(client, schemas, "/api/v1/programmes/kitchen/similar", "Similar")
    assert empty["items"] == []


def test_episode_hides_the_server_path(client, schemas):
    body = get_ok(client, schemas, "/api/v1/episodes/c1", "Episode")
    assert "media_path" not in body and body["playable"] is True
    assert body["start_s"] == 10.0 and body["end_s"] == 20.0
    assert body["links"]["media"] == "/media/c1"
    pending = get_ok(client, schemas, "/api/v1/episodes/k1", "Episode")
    assert pending["status"] == "pending" and pending["top_labels"] == {}


def test_timeline_tracks_align_with_segments(client, schemas):
    body = get_ok(client, schemas, "/api/v1/episodes/c1/timeline", "Timeline")
    assert (body["start_s"], body["end_s"], body["duration_s"]) == (10.0, 20.0, 10.0)
    assert [s["start_s"] for s in body["segments"]] == [10.0, 15.0]
    assert body["tracks"] and all(len(t["scores"]) == 2 for t in body["tracks"])
    car = next(t for t in body["tracks"] if t["label"] == "car")
    assert car["scores"] == [pytest.approx(0.9), pytest.approx(0.9)]
    assert client.get(body["segments"][1]["thumbnail"]).mimetype == "image/jpeg"


def test_shot(client, schemas):
    body = get_ok(client, schemas, "/api/v1/shots/bd1@1", "Shot")
    assert body["id"] == "bd1@1" and body["start_s"] == 5.0 and body["episode_id"] == "bd1"
    assert body["programme_title"] == "Beach Dogs"
    assert body["links"]["page"] == "/episodes/bd1?shot=1"


@pytest.mark.parametrize(("token", "first"), [
    ("bic", "object:bicycle"),
    ("traff", 'object:"traffic light"'),
    ("light", 'object:"traffic light"'),
    ("-do", "-object:dog"),
    ("scene:be", "scene:beach"),
    ("coco80:ca", "coco80:car"),
    ("programme:bea", 'programme:"Beach Dogs"'),
    ("genre:ne", "genre:news"),
])
def test_suggest(client, schemas, token, first):
    body = get_ok(client, schemas, f"/api/v1/suggest?q={token}", "Suggestions")
    assert body["items"][0]["text"] == first


def test_suggest_prefers_common_labels_and_knows_titles(client, schemas):
    body = get_ok(client, schemas, "/api/v1/suggest?q=d", "Suggestions")
    texts = [i["text"] for i in body["items"]]
    assert texts[0] == "object:dog"  # prefix match carried by the most episodes
    assert 'programme:"Dog Days"' in texts
    assert get_ok(client, schemas, "/api/v1/suggest?q=", "Suggestions")["items"] == []


# --- the state-changing endpoint -------------------------------------------------------------

def test_reindex_needs_the_key(client, schemas, store):
    url = "/api/v1/episodes/bd1/reindex"
    assert "X-API-Key" in get_error(client, schemas, url, 401, method="POST")
    assert "wrong API key" in get_error(client, schemas, url, 401, method="POST",
                                        headers={"X-API-Key": "nope"})
    assert store.episode("bd1").reindex_requested is False
    resp = client.post(url, headers={"X-API-Key": API_KEY})
    assert resp.status_code == 202
    schemas.validate(resp.get_json(), "ReindexAccepted")
    assert store.episode("bd1").reindex_requested is True
    assert get_ok(client, schemas, "/api/v1/episodes/bd1", "Episode")["reindex_requested"]
    assert "unknown episode" in get_error(client, schemas, "/api/v1/episodes/zz/reindex", 404,
                                          method="POST", headers={"X-API-Key": API_KEY})


def test_reindex_disabled_without_a_configured_key(tmp_path, store):
    client = create_app(web_settings(tmp_path), store).test_client()
    resp = client.post("/api/v1/episodes/bd1/reindex", headers={"X-API-Key": "anything"})
    assert resp.status_code == 403
    assert "no server.api_key is configured" in resp.get_json()["error"]["message"]
    assert store.episode("bd1").reindex_requested is False


def test_request_body_over_the_limit_is_413(client, schemas):
    message = get_error(client, schemas, "/api/v1/episodes/bd1/reindex", 413, method="POST",
                        data=b"x" * 70_000, headers={"X-API-Key": API_KEY})
    assert "over the limit of 65536 bytes" in message


@pytest.mark.parametrize("episode_id", ["bd1", "a b", "x@y", "ç/ñ?#%", "..", "-1"])
def test_fast_links_match_url_for(app: Flask, episode_id):
    from flask import url_for

    from webui.links import link

    with app.test_request_context("/api/v1/search?q=dog"):
        for endpoint, values in [("pages.player", {"episode_id": episode_id, "shot": 3}),
                                 ("media.thumbnail", {"episode_id": episode_id, "index": 12}),
                                 ("api.shot", {"shot_id": f"{episode_id}@4"}),
                                 ("api.programme", {"programme_id": episode_id})]:
            assert link(endpoint, **values) == url_for(endpoint, **values)
