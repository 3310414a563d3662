"""Request parameters, checked once for pages and API alike; a bad one is a 400 that names it."""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Collection

from flask import request

from search.engine import MAX_LIMIT
from search.ranking import parse_sort
from tvindex.core.limits import DEFAULT_LIMIT
from tvindex.core.records import LEVELS, Level
from webui.context import ctx
from webui.errors import BadParameter


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be an integer, got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise BadParameter(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def limit_arg(default: int = DEFAULT_LIMIT) -> int:
    return int_arg("limit", default, 1, MAX_LIMIT)


def offset_arg() -> int:
    return int_arg("offset", 0, 0, 10**9)


def level_arg(default: Level = "shot") -> Level:
    raw = request.args.get("level") or default
    if raw not in LEVELS:
        raise BadParameter(f"level must be one of {', '.join(LEVELS)}, got {raw[:40]!r}")
    return raw  # type: ignore[return-value]


def text_arg(name: str, default: str = "", max_length: int | None = None) -> str:
    """A free-text parameter, bounded (the query limit from configuration by default)."""
    raw = request.args.get(name, default)
    limit = ctx().max_query_length if max_length is None else max_length
    if len(raw) > limit:
        raise BadParameter(f"{name} is too long: {len(raw)} characters (limit {limit})")
    return raw


def date_arg(name: str) -> dt.date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise BadParameter(f"{name} must be a date YYYY-MM-DD, got {raw[:40]!r}") from None


def min_score_arg() -> float:
    """``min_score``: the score floor, a number in [0, 1] (default 0: no floor)."""
    raw = request.args.get("min_score", "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise BadParameter(f"min_score must be a number, got {raw[:40]!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise BadParameter(f"min_score must be between 0 and 1, got {raw[:40]!r}")
    return value


def sort_arg() -> str:
    """``sort``: score, air_date or duration, optionally :asc/:desc (default score)."""
    raw = request.args.get("sort", "").strip() or "score"
    try:
        parse_sort(raw)
    except ValueError as exc:
        raise BadParameter(str(exc)) from None
    return raw


def flag_arg(name: str) -> bool:
    return request.args.get(name, "") in ("1", "true", "on", "yes")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def bool_arg(name: str, default: bool = False) -> bool:
    """A strict boolean parameter: true/false (also 1/0, yes/no, on/off); else a 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadParameter(f"{name} must be true or false, got {raw[:40]!r}")


# Names other APIs use for the parameters this one calls limit, offset and q: an unknown
# parameter that is one of these gets the matching name as its suggestion (``size=2`` ->
# did you mean limit?); otherwise the closest known name by spelling (difflib), if any.
PARAMETER_ALIASES = {
    **dict.fromkeys(("size", "page_size", "per_page", "pagesize", "count", "max", "max_results",
                     "rows", "top", "n", "k", "num", "number"), "limit"),
    **dict.fromkeys(("from", "skip", "start", "page"), "offset"),
    **dict.fromkeys(("query", "text", "search", "term", "terms", "keywords", "prefix"), "q"),
}


def suggest_parameter(name: str, known: Collection[str]) -> str | None:
    """The known parameter ``name`` was most likely meant to be, or None."""
    key = name.strip().lower()
    alias = PARAMETER_ALIASES.get(key.replace("-", "_"))
    if alias in known:
        return alias
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return close[0] if close else None


def check_known_args(known: Collection[str]) -> None:
    """A 400 naming every query parameter of the request that is not in ``known`` (the
    operation's parameters in the OpenAPI document), each with its did-you-mean."""
    unknown = [name for name in request.args if name not in known]
    if not unknown:
        return
    suggestions = {name: suggest_parameter(name, known) for name in unknown}
    parts = [f"{name[:40]!r}" + (f" (did you mean {hint!r}?)" if hint else "")
             for name, hint in suggestions.items()]
    takes = (f"it takes {', '.join(sorted(known))}" if known
             else "it takes no query parameters")
    noun = "parameter" if len(unknown) == 1 else "parameters"
    exc = BadParameter(f"unknown query {noun} {', '.join(parts)}; {takes}")
    # Structured, for error bodies that carry more than the message.
    exc.parameters = unknown  # type: ignore[attr-defined]
    exc.suggestions = [hint for hint in suggestions.values() if hint]  # type: ignore[attr-defined]
    raise exc
