"""The editors' pages: search, player, programmes, labels, similar shots (server-rendered
Jinja2).

Every catalogue string reaches the HTML through Jinja's autoescaping; nothing is marked safe.
Data for scripts travels in ``data-*`` attributes, so the CSP can forbid inline scripts.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from search.engine import run_search
from search.facets import FACETS, run_facets
from search.query import QueryError, Term
from search.recommend import RecommendError
from tvindex.core.genres import merged_genres
from tvindex.core.labels import role_of
from tvindex.core.limits import DEFAULT_LIMIT
from tvindex.core.records import LEVELS, Hit, SearchPage, parse_shot_id
from tvindex.core.store import StoreError
from webui.context import ctx
from webui.errors import BadParameter
from webui.example import ACCEPT, Example, preview_data_url, read_example, shot_value
from webui.media import is_playable
from webui.params import (
    date_arg,
    flag_arg,
    int_arg,
    level_arg,
    min_score_arg,
    offset_arg,
    sort_arg,
    text_arg,
)
from webui.pictures import PictureResult, check_id, pictures
from webui.suggest import field_for_set
from webui.timeline import episode_timeline

bp = Blueprint("pages", __name__)
PAGE_SIZE = DEFAULT_LIMIT  # one default for the CLI, the API and the pages
_DID_YOU_MEAN = re.compile(
    r"unknown (?:label|programme) '(?P<value>.*?)'(?: in '.*?' \(searched [^)]*\))?"
    r"; did you mean: (?P<names>.*)\?$")


def compose_query(q: str, programme_id: str, after: Any, before: Any) -> str:
    """The query text the search runs: what the editor typed plus the form's filters."""
    parts = [q.strip()] if q.strip() else []
    if programme_id:
        if '"' in programme_id:
            raise BadParameter("programme ids containing '\"' cannot be filtered on")
        parts.append(Term("programme", programme_id).to_query())
    if after:
        parts.append(f"after:{after.isoformat()}")
    if before:
        parts.append(f"before:{before.isoformat()}")
    return " ".join(parts)


def _split_names(text: str, known: set[str]) -> list[str]:
    """'a, b, c' -> names, re-joining pieces of a known name that itself holds ', '."""
    pieces, out, buf = text.split(", "), [], ""
    for piece in pieces:
        buf = f"{buf}, {piece}" if buf else piece
        if buf in known or not any(k.startswith(buf + ",") for k in known):
            out.append(buf)
            buf = ""
    return out + ([buf] if buf else [])


def did_you_mean(query: str, error: QueryError, known: set[str]) -> list[dict[str, str]]:
    """For an unknown label or programme: each suggested name with the query corrected."""
    m = _DID_YOU_MEAN.search(error.message)
    if not m:
        return []
    value = m.group("value")
    at = query.casefold().find(value.casefold())
    if at < 0:
        return []
    quoted = at > 0 and query[at - 1] == '"'
    out = []
    for name in _split_names(m.group("names"), known):
        replacement = name if quoted else Term(None, name).to_query()
        out.append({"name": name, "query": query[:at] + replacement + query[at + len(value):]})
    return out


def _popular_labels(n: int = 18) -> list[dict[str, Any]]:
    labels = [i for i in ctx().store.labels() if i.episodes > 0]
    labels.sort(key=lambda i: (role_of(i.label_set) != "object", -i.episodes, -i.shots, i.name))
    objects = [i for i in labels if role_of(i.label_set) == "object"][: n * 2 // 3]
    others = [i for i in labels if role_of(i.label_set) != "object"][: n - len(objects)]
    return [{"name": i.name, "label_set": i.label_set, "episodes": i.episodes,
             "query": Term(field_for_set(i.label_set, i.name), i.name).to_query()}
            for i in objects + others]


def _no_result_suggestions(query: str) -> list[dict[str, Any]]:
    """Labels close to the words of a query that found nothing, else the common ones."""
    words = [w.split(":", 1)[-1].strip('"-') for w in query.split()]
    seen, out = set(), []
    for w in words:
        if len(w) < 2 or w.lower() == "or":
            continue
        for s in ctx().suggester.suggest(w, 4):
            if s["kind"] == "label" and s["text"] not in seen and s["text"] not in query:
                seen.add(s["text"])
                out.append({"name": s["name"], "label_set": s["label_set"],
                            "episodes": s["episodes"], "query": s["text"]})
    return out[:10] or _popular_labels(10)


def _page_url(offset: int) -> str:
    args = request.args.to_dict()
    args["offset"] = str(offset)
    return url_for("pages.search", **args)


@bp.get("/")
def search() -> tuple[str, int]:
    store = ctx().store
    q = text_arg("q")
    level = level_arg()
    limit = int_arg("limit", PAGE_SIZE, 1, 96)
    offset = offset_arg()
    min_score, sort = min_score_arg(), sort_arg()
    programme_id = text_arg("programme", max_length=200)
    after, before = date_arg("after"), date_arg("before")
    programmes = store.programmes()
    if programme_id and programme_id not in {p.id for p in programmes}:
        raise BadParameter(f"unknown programme {programme_id!r}")
    effective = compose_query(q, programme_id, after, before)
    page: SearchPage | None = None
    error: QueryError | None = None
    fixes: list[dict[str, str]] = []
    status = 200
    if effective:
        try:
            page = run_search(store, effective, level, limit, offset, sort=sort,
                              min_score=min_score)
        except QueryError as exc:
            error, status = exc, 400
            known = {i.name for i in store.labels(counts=False)} | {
                p.title for p in programmes}
            fixes = did_you_mean(effective, exc, known)
    facets: dict[str, Any] = {}
    if page is not None and page.total:  # the side panel (_facets.html; search/facets.py)
        try:
            facets = run_facets(store, effective, level, FACETS, min_score=min_score)
        except StoreError:
            facets = {}  # 'then' queries and word terms have no facets
    suggestions: list[dict[str, Any]] = []
    if page is not None and page.total == 0:
        suggestions = _no_result_suggestions(q)
    nav = {}
    if page is not None:
        if offset + limit < page.total:
            nav["next"] = _page_url(offset + limit)
        if offset > 0:
            nav["prev"] = _page_url(max(0, offset - limit))
    return render_template(
        "search.html", q=q, level=level, levels=LEVELS, limit=limit, offset=offset, accept=ACCEPT,
        programme_id=programme_id, after=after, before=before, programmes=programmes,
        effective=effective, page=page, error=error, fixes=fixes, suggestions=suggestions,
        popular=_popular_labels() if not effective else [], nav=nav, sort=sort,
        min_score=min_score, facets=facets,
        empty_catalogue=not programmes, examples=ctx().examples.get()), status


@bp.get("/programmes")
def programmes() -> str:
    return render_template("programmes.html", programmes=ctx().store.programmes())


@bp.get("/programmes/<programme_id>")
def programme(programme_id: str) -> str:
    context = ctx()
    prog = context.store.programme(programme_id)
    recommender = context.recommender()
    store = context.store  # genres: catalogue and predicted (tvindex.core.genres)
    genres = merged_genres(prog.genre, store.predicted_genres(
        "programme", [programme_id]).get(programme_id, []))
    episode_genres = store.predicted_genres("episode", [e.id for e in prog.episodes])
    return render_template("programme.html", programme=prog, genres=genres,
                           episode_genres=episode_genres,
                           similar=recommender.similar_programmes(programme_id, 6),
                           weights={"embedding": recommender.embedding_weight,
                                    "label": recommender.label_weight})


@bp.get("/episodes/<episode_id>")
def player(episode_id: str) -> str:
    store = ctx().store
    timeline = episode_timeline(store, episode_id)
    episode = store.episode(episode_id)
    shot = request.args.get("shot")
    current = None
    if shot is not None:
        if not shot.isdigit():
            raise BadParameter(f"shot must be a shot index, got {shot[:40]!r}")
        current = next((s for s in timeline["segments"] if s.index == int(shot)), None)
        if current is None:
            abort(404, description=f"episode {episode_id!r} has no shot {shot}")
    start_at = current.start_s if current else timeline["start_s"]
    return render_template("player.html", episode=episode, timeline=timeline, current=current,
                           start_at=start_at, playable=is_playable(episode.media_path),
                           genres=store.predicted_genres("episode", [episode_id]).get(
                               episode_id, []),
                           transcript=store.transcript(episode_id))  # _transcript.html


@bp.get("/labels")
def labels() -> str:
    store = ctx().store
    sets = store.label_sets()
    if not sets:
        return render_template("labels.html", sets=[], current=None, labels=[], match="",
                               show_all=False, hidden=0)
    names = [ls.name for ls in sets]
    current = request.args.get("set") or names[0]
    if current not in names:
        abort(404, description=f"unknown label set {current!r}; available: {', '.join(names)}")
    match = text_arg("match", max_length=100).strip()
    show_all = flag_arg("all")
    infos = store.labels(current, match or None)
    shown = [i for i in infos if show_all or i.episodes > 0]
    shown.sort(key=lambda i: (-i.episodes, -i.shots, i.name))
    rows = [{"info": i, "query": Term(field_for_set(current, i.name), i.name).to_query()}
            for i in shown]
    max_eps = max((i.episodes for i in shown), default=0)
    return render_template("labels.html", sets=sets, current=current, labels=rows, match=match,
                           show_all=show_all, hidden=len(infos) - len(shown),
                           max_episodes=max_eps)


def _example_shot(shot: str) -> dict[str, Any]:
    """The example shot of a similar-shots page: its episode, times and best labels."""
    episode_id, index = parse_shot_id(shot)
    store = ctx().store
    episode = store.episode(episode_id)  # NotFound -> 404
    segment = next((s for s in store.segments(episode_id) if s.index == index), None)
    if segment is None:
        abort(404, description=f"episode {episode_id!r} has no shot {index}")
    return {"id": shot, "index": index, "episode": episode, "segment": segment}


@bp.route("/similar", methods=["GET", "POST"])
def similar() -> Response | tuple[str, int]:
    """Shots like an example: ``?shot=EPISODE@INDEX`` (the "find similar" action of every
    shot), or a picture POSTed from the search page's upload form (multipart, ``image``),
    which is kept by content and answered by a redirect to ``?image=ID``: a URL to share
    (``webui/pictures.py``)."""
    context = ctx()
    limit = int_arg("limit", PAGE_SIZE, 1, 96)
    exclude_episode = flag_arg("exclude_episode")
    example: Example | None = None
    shot: dict[str, Any] | None = None
    preview: str | None = None
    image: dict[str, Any] | None = None
    result: PictureResult | None = None
    hits: list[Hit] = []
    error: str | None = None
    status = 200
    try:
        if request.method == "POST":
            example = read_example(context.max_upload_pixels)
        elif request.args.get("shot", "").strip():
            example = Example(shot=shot_value(text_arg("shot", max_length=300)))
        elif request.args.get("image", "").strip():
            pid = check_id(text_arg("image", max_length=64))
            example = Example(image=pictures().store.get(pid, context.max_upload_pixels))
            image = {**example.image.describe(), "id": pid}
        if example is not None and example.shot is not None:
            shot = _example_shot(example.shot)
            hits = context.recommender().similar_shots(example.shot, limit,
                                                       exclude_episode=exclude_episode)
        elif example is not None and example.image is not None:
            pixels = example.image.pixels
            pid = image["id"] if image else None
            if pid is None:  # a new upload: keep it, then answer at its shareable URL
                pid = pictures().store.put(pixels)
                if pid is not None:
                    args = {"image": pid, **({"limit": limit} if limit != PAGE_SIZE else {})}
                    return redirect(url_for("pages.similar", **args), 303)
                image = example.image.describe()
            preview = preview_data_url(pixels)
            result = pictures().search(context, pixels, limit, pid)
            hits = result.hits
    except HTTPException as exc:
        if exc.code == 404:
            raise
        error, status = exc.description or exc.name, exc.code or 400
    except RecommendError as exc:
        error, status = str(exc), 409
    return render_template("similar.html", shot=shot, preview=preview, image=image, hits=hits,
                           result=result, error=error, exclude_episode=exclude_episode,
                           limit=limit, keep_days=context.settings.pictures.keep_days,
                           accept=ACCEPT, searched=example is not None), status
