"""The JSON API, version 1 (``/api/v1``), documented by ``/api/v1/openapi.json``.

Read-only except ``POST /episodes/{id}/reindex``, which needs the configured API key in the
``X-API-Key`` header (403 while no key is configured, 401 without the right one). Lists are
paginated with ``limit``/``offset`` and answer ``total`` and ``next`` (the URL of the next
page, null on the last) plus ``next_offset``.

Recommendations (``search/recommend.py``, one ``Recommender`` per app): similar programmes,
episodes and shots, and ``POST /similar``, a query by example (an uploaded picture or a shot
id; ``webui/example.py`` validates it). A catalogue that cannot answer (no embeddings, or
embedded by another model than the configured one) is a 409.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import Forbidden, Gone, Unauthorized

from search.cursor import CursorExpired, CursorInvalid, CursorPager, SnapshotCache
from search.engine import run_search
from search.facets import parse_facets, run_facets
from search.timecodes import add_timecodes, timecoded
from tvindex import __version__
from tvindex.core.genres import merged_genres
from tvindex.core.labels import label_role
from tvindex.core.records import Hit, SearchPage, parse_shot_id
from tvindex.core.store import NotFound, StoreError
from tvindex.core.words import WORD_SOURCES
from webui import openapi
from webui.context import ctx
from webui.downloads import episode_download, format_arg, search_download
from webui.errors import BadParameter
from webui.example import read_example
from webui.links import link
from webui.media import is_playable
from webui.params import (
    bool_arg,
    check_known_args,
    int_arg,
    level_arg,
    limit_arg,
    min_score_arg,
    offset_arg,
    sort_arg,
    text_arg,
)
from webui.pictures import check_id, embedder_state, pictures
from webui.timeline import episode_timeline
from webui.vocabulary import display_name, label_query

bp = Blueprint("api", __name__)
log = logging.getLogger(__name__)
VERSION = "v1"
API_ROOT = "/api/" + VERSION  # where app.py mounts this blueprint
SIMILAR_LIMIT = 100  # the most items a recommendation endpoint answers


@bp.before_request
def _known_parameters() -> None:
    """Unknown query parameters are a 400 that names them (``size=2`` is not silently the
    default page). The parameters each operation takes are read from the OpenAPI document,
    so the two cannot drift; OPTIONS (CORS preflight) is not checked."""
    rule = request.url_rule
    if rule is None or request.method == "OPTIONS":
        return
    known = openapi.query_parameters(rule.rule.removeprefix(API_ROOT), request.method)
    if known is not None:
        check_known_args(known)


def _page_links(total: int, offset: int, limit: int) -> dict[str, Any]:
    nxt = offset + limit if offset + limit < total else None
    url = None
    if nxt is not None:
        args = {**request.args.to_dict(), **(request.view_args or {}),
                "offset": str(nxt), "limit": str(limit)}
        url = link(request.endpoint or "", **args)
    return {"next_offset": nxt, "next": url}


def _paged(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    return {"total": len(items), "offset": offset, "limit": limit,
            **_page_links(len(items), offset, limit), "items": items[offset:offset + limit]}


def _programme_links(programme_id: str) -> dict[str, str]:
    return {"self": link("api.programme", programme_id=programme_id),
            "page": link("pages.programme", programme_id=programme_id),
            "thumbnail": link("media.programme_poster", programme_id=programme_id)}


def _episode_links(episode_id: str) -> dict[str, str]:
    return {"self": link("api.episode", episode_id=episode_id),
            "page": link("pages.player", episode_id=episode_id),
            "thumbnail": link("media.episode_poster", episode_id=episode_id)}


def hit_links(hit: Hit) -> dict[str, str]:
    if hit.level == "programme":
        return {**_programme_links(hit.id), "similar": link("api.similar", programme_id=hit.id)}
    assert hit.episode_id is not None
    if hit.level == "episode":  # an episode hit's id is its episode id
        return {**_episode_links(hit.id),
                "similar": link("api.similar_episodes", episode_id=hit.id)}
    _, index = parse_shot_id(hit.id)
    return {"self": link("api.shot", shot_id=hit.id),
            "page": link("pages.player", episode_id=hit.episode_id, shot=index),
            "thumbnail": link("media.thumbnail", episode_id=hit.episode_id, index=index),
            "similar": link("api.similar_shots", shot_id=hit.id)}


def serialise_hits(hits: list[Hit]) -> list[dict[str, Any]]:
    """Hits as the search answers them, each with its links and timecodes."""
    add_timecodes(ctx().store, hits)
    out = []
    for hit in hits:
        item = hit.to_dict()
        item["links"] = hit_links(hit)
        out.append(item)
    return out


@bp.get("/health")
def health() -> Response | tuple[Response, int]:
    """200 with the catalogue's counts; 503 when the catalogue is damaged or unreachable
    (``CatalogueReader.check``: cheap, plus SQLite's quick check when the file changed, at
    most once a minute). What is wrong goes to the log, never to the client."""
    try:
        ctx().store.check()
        return _health_counts()
    except (StoreError, OSError) as exc:
        log.error("health: the catalogue is unavailable: %s", exc)
        return jsonify({"status": "unavailable", "version": __version__, "api": VERSION,
                        "error": {"status": 503, "message": "the catalogue is damaged or "
                                                            "unreachable (see the server log)"}
                        }), 503


def _health_counts() -> Response:
    states = ctx().store.episode_states()
    counts = {s: sum(1 for e in states if e.status == s) for s in ("indexed", "pending",
                                                                    "failed")}
    return jsonify({"status": "ok", "version": __version__, "api": VERSION,
                    "backend": ctx().store.backend, "programmes": len(ctx().store.programmes()),
                    "episodes": {"total": len(states), **counts},
                    "embedder": embedder_state(current_app)})


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.document(__version__))


class CursorGone(Gone):
    """A cursor whose result list is no longer kept, and the catalogue changed since (410)."""

    problem_code = "cursor_expired"


def _pager() -> CursorPager:
    """This app's cursor pager: a per-process key and the first pages' snapshots."""
    pager = current_app.extensions.get("tvindex_cursors")
    if pager is None:
        pager = current_app.extensions.setdefault("tvindex_cursors",
                                                  CursorPager(snapshots=SnapshotCache()))
    return pager


def _cursor_page(token: str) -> tuple[SearchPage, str]:
    """The page a ``cursor`` names; q, level and limit, when given, must match it."""
    if request.args.get("offset", "") != "":
        raise BadParameter("cursor and offset cannot be used together: a cursor carries its "
                           "own position")
    given_q = text_arg("q") if "q" in request.args else None
    given = {"q": given_q, "level": level_arg() if request.args.get("level") else None,
             "limit": limit_arg() if request.args.get("limit") else None,
             "sort": sort_arg() if request.args.get("sort") else None,
             "min_score": min_score_arg() if request.args.get("min_score") else None}
    try:
        c = _pager().decode(token, **given)
        return _pager().page(ctx().store, c), c.q
    except CursorInvalid as exc:
        raise BadParameter(str(exc)) from None
    except CursorExpired as exc:
        raise CursorGone(str(exc)) from None


@bp.get("/search")
def search() -> Response:
    fmt = format_arg()
    if fmt is not None:  # a download of the search's shots (webui/downloads.py)
        q = text_arg("q")
        if not q.strip():
            raise BadParameter("q is required: the query whose shots to export")
        return search_download(q, fmt)
    token = request.args.get("cursor")
    if token:
        page, q = _cursor_page(token)
        nxt = None if page.next_cursor is None else link(
            "api.search", q=q, level=page.level, limit=str(page.limit), cursor=page.next_cursor)
        body = page.to_dict()
        body["hits"] = serialise_hits(page.hits)
        body.update(q=q, next=nxt,
                    next_offset=None if nxt is None else page.offset + page.limit)
        return jsonify(body)
    q = text_arg("q")
    if not q.strip():
        example = ctx().examples.get()["placeholder"].removeprefix("Search the pictures: ")
        raise BadParameter(f"q is required: the query text, e.g. q={example or 'object:dog'}")
    level, limit, offset = level_arg(), limit_arg(), offset_arg()
    options = {"sort": sort_arg(), "min_score": min_score_arg()}
    try:
        facet_names = parse_facets(request.args.get("facets"))
    except StoreError as exc:
        raise BadParameter(str(exc)) from None
    if request.args.get("offset", "") == "":  # a first page: it also offers a cursor
        page = _pager().first_page(ctx().store, q, level, limit, **options)
    else:
        page = run_search(ctx().store, q, level, limit, offset, **options)
    body = page.to_dict()
    body["hits"] = serialise_hits(page.hits)
    body.update(q=q, **_page_links(page.total, offset, limit))
    if facet_names:  # issue 15: counts over every matched item (search/facets.py)
        body["facets"] = run_facets(ctx().store, q, level, facet_names,
                                    min_score=options["min_score"])
    return jsonify(body)


@bp.get("/suggest")
def suggest() -> Response:
    token = text_arg("q", max_length=200)
    items = ctx().suggester.suggest(token, int_arg("limit", 10, 1, 50))
    return jsonify({"q": token, "items": items})


@bp.get("/labels")
def labels() -> Response:
    label_set = text_arg("set", max_length=100) or None
    match = text_arg("match", max_length=100) or None
    store = ctx().store
    if label_set and label_set not in {ls.name for ls in store.label_sets()}:
        raise NotFound(f"unknown label set {label_set!r}; available: "
                       + ", ".join(ls.name for ls in store.label_sets()))
    settings = ctx().settings
    items = [{"label_set": i.label_set, "label_id": i.label_id, "name": i.name,
              "activation": i.activation, "shots": i.shots, "episodes": i.episodes,
              "label_set_name": display_name(settings, i.label_set),
              "role": label_role(i.label_set, i.name), "query": label_query(i.label_set, i.name)}
             for i in store.labels(label_set, match)]
    return jsonify(_paged(items, offset_arg(), limit_arg(100)))


@bp.get("/programmes")
def programmes() -> Response:
    items = [p.to_dict() for p in ctx().store.programmes()]
    for p in items:
        p["links"] = {"self": link("api.programme", programme_id=p["id"]),
                      "page": link("pages.programme", programme_id=p["id"])}
    return jsonify(_paged(items, offset_arg(), limit_arg()))


@bp.get("/programmes/<programme_id>")
def programme(programme_id: str) -> Response:
    store = ctx().store
    body = store.programme(programme_id).to_dict()
    # genres: catalogue and predicted (with score); each episode's predicted genres
    body["genres"] = [g.to_dict() for g in merged_genres(
        body["genre"], store.predicted_genres("programme", [programme_id]).get(programme_id, []))]
    predicted = store.predicted_genres("episode", [ep["id"] for ep in body["episodes"]])
    for ep in body["episodes"]:
        ep["links"] = {"self": link("api.episode", episode_id=ep["id"])}
        ep["genres"] = [g.to_dict() for g in predicted.get(ep["id"], [])]
    body["links"] = {"page": link("pages.programme", programme_id=programme_id),
                     "similar": link("api.similar", programme_id=programme_id)}
    return jsonify(body)


def _weights() -> dict[str, float]:
    r = ctx().recommender()
    return {"embedding": r.embedding_weight, "label": r.label_weight}


def _blended(key: str, item_id: str, items: list[dict[str, Any]],
             links: Callable[[str], dict[str, str]]) -> Response:
    """A similar-programmes/episodes answer: the items with their links, and the blend used."""
    for item in items:
        item["links"] = links(item["id"])
    return jsonify({key: item_id, "method": openapi.BLEND_METHOD, "weights": _weights(),
                    "items": items})


@bp.get("/programmes/<programme_id>/similar")
def similar(programme_id: str) -> Response:
    limit = int_arg("limit", 5, 1, SIMILAR_LIMIT)
    return _blended("programme_id", programme_id,
                    ctx().recommender().similar_programmes(programme_id, limit),
                    _programme_links)


@bp.get("/episodes/<episode_id>/similar")
def similar_episodes(episode_id: str) -> Response:
    limit = int_arg("limit", 10, 1, SIMILAR_LIMIT)
    return _blended("episode_id", episode_id,
                    ctx().recommender().similar_episodes(episode_id, limit), _episode_links)


def _shot_arg(shot_id: str) -> str:
    try:
        parse_shot_id(shot_id)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    return shot_id


def _shots_body(query: dict[str, Any], hits: list[Hit]) -> dict[str, Any]:
    return {"query": query, "method": openapi.SHOT_METHOD,
            "model": ctx().store.embedding_model(), "items": serialise_hits(hits)}


@bp.get("/shots/<shot_id>/similar")
def similar_shots(shot_id: str) -> Response:
    _shot_arg(shot_id)
    limit = int_arg("limit", 10, 1, SIMILAR_LIMIT)
    exclude_episode = bool_arg("exclude_episode")
    hits = ctx().recommender().similar_shots(shot_id, limit, exclude_episode=exclude_episode)
    return jsonify(_shots_body({"kind": "shot", "shot_id": shot_id,
                                "exclude_episode": exclude_episode, "image": None}, hits))


@bp.post("/similar")
def similar_to_example() -> Response:
    """Query by example: the shots most like an uploaded picture, or like a shot."""
    limit = int_arg("limit", 10, 1, SIMILAR_LIMIT)
    exclude_episode = bool_arg("exclude_episode")
    context = ctx()
    example = read_example(context.max_upload_pixels)
    recommender = context.recommender()
    if example.shot is not None:
        hits = recommender.similar_shots(example.shot, limit, exclude_episode=exclude_episode)
        query = {"kind": "shot", "shot_id": example.shot, "exclude_episode": exclude_episode,
                 "image": None}
    else:
        assert example.image is not None
        pid = pictures().store.put(example.image.pixels)  # kept: a GET URL to share
        return _picture_body(example.image, pid, limit)
    return jsonify(_shots_body(query, hits))


@bp.get("/similar")
def similar_to_picture() -> Response:
    """Query by example with a kept picture: the answer a picture upload gave, at the URL
    it named (``image``: the picture's id; 410 once it is no longer kept)."""
    limit = int_arg("limit", 10, 1, SIMILAR_LIMIT)
    pid = text_arg("image", max_length=64)
    if not pid:
        raise BadParameter("image is required: the id of a picture uploaded with POST /similar")
    image = pictures().store.get(check_id(pid), ctx().max_upload_pixels)
    return _picture_body(image, pid, limit)


def _picture_body(image: Any, pid: str | None, limit: int) -> Response:
    """Shots like a picture, after the floor (``webui/pictures.py``), with its share link."""
    result = pictures().search(ctx(), image.pixels, limit, pid)
    description = {**image.describe(), "id": pid}
    body = _shots_body({"kind": "image", "shot_id": None, "exclude_episode": False,
                        "image": description}, result.hits)
    body.update(result.to_dict())
    body["links"] = {} if pid is None else {
        "self": link("api.similar_to_picture", image=pid),
        "page": link("pages.similar", image=pid)}
    return jsonify(body)


def _episode_body(episode_id: str) -> dict[str, Any]:
    store = ctx().store
    body = store.episode(episode_id).to_dict()
    # genres: the programme's catalogue genres and the episode's predicted ones (with score)
    body["genres"] = [g.to_dict() for g in merged_genres(
        store.programme(body["programme_id"]).genre,
        store.predicted_genres("episode", [episode_id]).get(episode_id, []))]
    # The server's file path is not the client's business: it gets a URL instead.
    playable = is_playable(body.pop("media_path"))
    body["playable"] = playable
    body["links"] = {"media": link("media.media", episode_id=episode_id),
                     "page": link("pages.player", episode_id=episode_id),
                     "timeline": link("api.timeline", episode_id=episode_id),
                     "similar": link("api.similar_episodes", episode_id=episode_id),
                     "programme": link("api.programme", programme_id=body["programme_id"])}
    return body


@bp.get("/episodes/<episode_id>")
def episode(episode_id: str) -> Response:
    return jsonify(_episode_body(episode_id))


@bp.get("/episodes/<episode_id>/timeline")
def timeline(episode_id: str) -> Response:
    body = episode_timeline(ctx().store, episode_id)
    clock = ctx().store.episode_clocks([episode_id]).get(episode_id)
    body["segments"] = [timecoded(clock, s.to_dict()) for s in body["segments"]]
    for seg in body["segments"]:
        seg["thumbnail"] = link("media.thumbnail", episode_id=episode_id,
                                   index=seg["index"])
    return jsonify(body)


@bp.get("/episodes/<episode_id>/transcript")
def transcript(episode_id: str) -> Response:
    """Words (issue 17): the episode's text segments, one source or all (openapi_words.py)."""
    source = text_arg("source") or None
    if source is not None and source not in WORD_SOURCES:
        raise BadParameter(f"source must be one of {', '.join(WORD_SOURCES)}, got {source!r}")
    store = ctx().store
    segments = [s.to_dict() for s in store.transcript(episode_id, source)]  # NotFound: 404
    return jsonify({"episode_id": episode_id, "source": source, "segments": segments,
                    "sources": store.word_sources(episode_id),
                    "links": {"episode": link("api.episode", episode_id=episode_id),
                              "page": link("pages.player", episode_id=episode_id)}})


@bp.get("/episodes/<episode_id>/shots")
def episode_shots(episode_id: str) -> Response:
    return episode_download(episode_id, format_arg("json") or "json")


@bp.get("/shots/<shot_id>")
def shot(shot_id: str) -> Response:
    try:
        episode_id, index = parse_shot_id(shot_id)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    store = ctx().store
    found = next((s for s in store.segments(episode_id) if s.index == index), None)
    if found is None:
        raise NotFound(f"episode {episode_id!r} has no shot {index}")
    ep = store.episode(episode_id)
    segment = timecoded(ep.clock, found.to_dict())
    segment.update(episode_id=episode_id, episode_title=ep.title,
                   programme_id=ep.programme_id, programme_title=ep.programme_title,
                   air_date=ep.air_date)
    segment["links"] = {
        "page": link("pages.player", episode_id=episode_id, shot=index),
        "thumbnail": link("media.thumbnail", episode_id=episode_id, index=index),
        "media": link("media.media", episode_id=episode_id),
        "episode": link("api.episode", episode_id=episode_id),
        "similar": link("api.similar_shots", shot_id=shot_id)}
    return jsonify(segment)


@bp.post("/episodes/<episode_id>/reindex")
def reindex(episode_id: str) -> tuple[Response, int]:
    require_api_key()
    store = ctx().store
    store.request_reindex(episode_id)  # NotFound -> 404
    body = _episode_body(episode_id)
    return jsonify({"episode_id": episode_id, "reindex_requested": True,
                    "status": body["status"],
                    "message": "the next `tvindex index` run re-indexes this episode; its "
                               "current tags stay searchable until then",
                    "links": {"episode": link("api.episode", episode_id=episode_id)}}), 202


def require_api_key() -> None:
    key = ctx().api_key
    if not key:
        raise Forbidden("state-changing endpoints are disabled: no server.api_key is "
                        "configured (set TVINDEX__SERVER__API_KEY)")
    given = request.headers.get("X-API-Key", "")
    if not given:
        raise Unauthorized("this endpoint needs the API key in the X-API-Key header")
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise Unauthorized("wrong API key (X-API-Key header)")
