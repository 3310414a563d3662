"""The editors' pages: search, player, programmes, labels (server-rendered Jinja2).

Every catalogue string reaches the HTML through Jinja's autoescaping; nothing is marked safe.
Data for scripts travels in ``data-*`` attributes, so the CSP can forbid inline scripts.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, abort, render_template, request, url_for

from search.engine import run_search
from search.query import QueryError, Term
from search.records import LEVELS, SearchPage
from webui.context import ctx
from webui.errors import BadParameter
from webui.media import is_playable
from webui.params import date_arg, flag_arg, int_arg, level_arg, offset_arg, text_arg
from webui.similar import similar_programmes
from webui.suggest import OBJECT_SETS, field_for_set
from webui.timeline import episode_timeline

bp = Blueprint("pages", __name__)
PAGE_SIZE = 24
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
    labels.sort(key=lambda i: (i.label_set not in OBJECT_SETS, -i.episodes, -i.shots, i.name))
    objects = [i for i in labels if i.label_set in OBJECT_SETS][: n * 2 // 3]
    others = [i for i in labels if i.label_set not in OBJECT_SETS][: n - len(objects)]
    return [{"name": i.name, "label_set": i.label_set, "episodes": i.episodes,
             "query": Term(field_for_set(i.label_set), i.name).to_query()}
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
    programme_id = text_arg("programme", max_length=200)
    after, before = date_arg("after"), date_arg("before")
    programmes = store.programmes()
    if programme_id and programme_id not in {p["id"] for p in programmes}:
        raise BadParameter(f"unknown programme {programme_id!r}")
    effective = compose_query(q, programme_id, after, before)
    page: SearchPage | None = None
    error: QueryError | None = None
    fixes: list[dict[str, str]] = []
    status = 200
    if effective:
        try:
            page = run_search(store, effective, level, limit, offset)
        except QueryError as exc:
            error, status = exc, 400
            known = {i.name for i in store.labels(counts=False)} | {
                p["title"] for p in programmes}
            fixes = did_you_mean(effective, exc, known)
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
        "search.html", q=q, level=level, levels=LEVELS, limit=limit, offset=offset,
        programme_id=programme_id, after=after, before=before, programmes=programmes,
        effective=effective, page=page, error=error, fixes=fixes, suggestions=suggestions,
        popular=_popular_labels() if not effective else [], nav=nav,
        empty_catalogue=not programmes), status


@bp.get("/programmes")
def programmes() -> str:
    return render_template("programmes.html", programmes=ctx().store.programmes())


@bp.get("/programmes/<programme_id>")
def programme(programme_id: str) -> str:
    store = ctx().store
    prog = store.programme(programme_id)
    return render_template("programme.html", programme=prog,
                           similar=similar_programmes(store, programme_id, 6))


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
        current = next((s for s in timeline["segments"] if s["index"] == int(shot)), None)
        if current is None:
            abort(404, description=f"episode {episode_id!r} has no shot {shot}")
    start_at = current["start_s"] if current else timeline["start_s"]
    return render_template("player.html", episode=episode, timeline=timeline, current=current,
                           start_at=start_at, playable=is_playable(episode["media_path"]))


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
    field = field_for_set(current)
    rows = [{"info": i, "query": Term(field, i.name).to_query()} for i in shown]
    max_eps = max((i.episodes for i in shown), default=0)
    return render_template("labels.html", sets=sets, current=current, labels=rows, match=match,
                           show_all=show_all, hidden=len(infos) - len(shown),
                           max_episodes=max_eps)
