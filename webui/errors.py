"""Errors: RFC 9457 problem details (``application/problem+json``) under /api, an HTML page
elsewhere. A detail says what was wrong; a 500 never shows a traceback.

A problem is ``{"type", "title", "status", "detail", "code", "instance"}`` plus structured
members where they exist: ``column`` (1-based position in the query), ``suggestions``
(did-you-mean), ``parameters`` (unknown query parameters), ``retry_after`` (seconds, as in the
``Retry-After`` header). ``type`` is ``PROBLEM_TYPE_BASE`` + ``code``: an identifier, not a
link. For one release the old ``{"error": {"status", "message"[, "column"]}}`` object is kept
beside them (deprecated).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, current_app, render_template, request
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError
from werkzeug.exceptions import NotFound as HTTPNotFound

from search.query import QueryError
from search.recommend import RecommendError
from search.vector_catalogue import VectorsDamaged
from tvindex.core.store import (
    CatalogueCorrupt,
    CatalogueReadOnly,
    NotFound,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)
API_PREFIX = "/api/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tvindex.invalid/problems/"
# Seconds a client is asked to wait after a 503 (the store is unreachable): the store's own
# bounded retries have already been spent on this request.
RETRY_AFTER_S = 30
UNAVAILABLE_MESSAGE = "the catalogue store is unavailable; try again later"

# The stable machine codes: code -> title (the same for every occurrence of the code).
PROBLEM_TITLES: dict[str, str] = {
    "bad_request": "Bad request",
    "bad_parameter": "Invalid parameter",
    "unknown_parameter": "Unknown query parameter",
    "query_syntax": "Invalid query",
    "unknown_label": "Unknown label",
    "unknown_programme": "Unknown programme",
    "host_not_allowed": "Host not served here",
    "unauthorized": "API key required",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "not_acceptable": "Not acceptable",
    "conflict": "Conflict",
    "gone": "Gone",
    "cursor_expired": "Cursor expired",
    "picture_gone": "Picture no longer kept",
    "no_embeddings": "No usable embeddings",
    "read_only": "Catalogue is read-only",
    "payload_too_large": "Request body too large",
    "uri_too_long": "URI too long",
    "unsupported_media_type": "Unsupported media type",
    "range_not_satisfiable": "Range not satisfiable",
    "rate_limited": "Too many requests",
    "headers_too_large": "Request headers too large",
    "internal": "Internal server error",
    "not_implemented": "Not implemented",
    "store_unavailable": "Catalogue store unavailable",
    "vectors_damaged": "Vector index damaged",
    "catalogue_damaged": "Catalogue damaged",
    "client_error": "Client error",
    "server_error": "Server error",
}
# The code of an error that has no more specific one, by HTTP status.
STATUS_CODES: dict[int, str] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 410: "gone",
    413: "payload_too_large", 414: "uri_too_long", 415: "unsupported_media_type",
    416: "range_not_satisfiable", 429: "rate_limited", 431: "headers_too_large",
    500: "internal", 501: "not_implemented", 503: "store_unavailable",
}


def status_code_name(status: int) -> str:
    return STATUS_CODES.get(status, "server_error" if status >= 500 else "client_error")


class BadParameter(BadRequest):
    """A request parameter is missing or invalid; ``description`` says which and why."""

    problem_code = "bad_parameter"

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


class HostNotAllowed(BadRequest):
    """The request's Host is not one this server answers to (``server.allowed_hosts``)."""

    problem_code = "host_not_allowed"


def problem(status: int, code: str, detail: str, instance: str | None = None,
            **extra: Any) -> dict[str, Any]:
    """The problem-details object; ``extra`` members that are None are left out."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + code,
                            "title": PROBLEM_TITLES.get(code, code), "status": status,
                            "detail": detail, "code": code}
    if instance:
        body["instance"] = instance
    body.update((k, v) for k, v in extra.items() if v is not None)
    legacy: dict[str, Any] = {"status": status, "message": detail}
    if extra.get("column") is not None:
        legacy["column"] = extra["column"]
    body["error"] = legacy  # deprecated: the shape before problem details, for one release
    return body


def wants_json() -> bool:
    return request.path.startswith(API_PREFIX)


def error_response(status: int, message: str, column: int | None = None, *,
                   code: str | None = None, suggestions: Sequence[str] | None = None,
                   parameters: Sequence[str] | None = None,
                   retry_after: int | None = None) -> Response:
    """A problem+json answer under /api, else the HTML error page; with ``retry_after``
    also the ``Retry-After`` header."""
    if wants_json():
        body = problem(status, code or status_code_name(status), message, request.path,
                       column=column,
                       suggestions=None if suggestions is None else list(suggestions),
                       parameters=None if parameters is None else list(parameters),
                       retry_after=retry_after)
        resp = Response(current_app.json.dumps(body) + "\n", status=status,
                        mimetype=PROBLEM_MEDIA_TYPE)
    else:
        html = render_template("error.html", status=status, message=message)
        resp = Response(html, status=status, mimetype="text/html")
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


_TERM_END = r"(?=$|[\s)\"])"


def term_column(query: str, value: str) -> int | None:
    """Best effort: the 1-based column of the first term ``value`` in ``query`` (a whole term,
    case-insensitive, after a space, ``(``, ``-``, ``:`` or quote), or None."""
    if not value:
        return None
    words = r"[\s_]+".join(re.escape(w) for w in value.split())
    found = re.search(r"(?:^|(?<=[\s(\-:\"]))" + words + _TERM_END, query, re.IGNORECASE)
    return found.start() + 1 if found else None


def _query_error(exc: QueryError) -> Response:
    code = getattr(exc, "code", "query_syntax")
    column = exc.column
    term = getattr(exc, "term", None)
    if column is None and term:
        column = term_column(request.args.get("q", ""), term)
    suggestions = getattr(exc, "suggestions", ())
    return error_response(400, exc.message, column, code=code,
                          suggestions=list(suggestions) if suggestions else None)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        message = exc.description or exc.name
        status = exc.code or 500
        if status == 404 and message == HTTPNotFound.description:
            message = f"no such resource: {request.path}"
        parameters = getattr(exc, "parameters", None)
        code = getattr(exc, "problem_code", None) or status_code_name(status)
        if parameters:
            code = "unknown_parameter"
        resp = error_response(status, message, getattr(exc, "column", None), code=code,
                              parameters=parameters,
                              suggestions=getattr(exc, "suggestions", None) if parameters
                              else None)
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            resp.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return resp

    app.register_error_handler(QueryError, _query_error)

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> Response:
        return error_response(404, str(exc), code="not_found")

    @app.errorhandler(RecommendError)
    def _recommend(exc: RecommendError) -> Response:
        # The request is fine; the catalogue cannot answer it (no embeddings, another model).
        return error_response(409, str(exc), code="no_embeddings")

    @app.errorhandler(VectorsDamaged)
    def _vectors_damaged(exc: VectorsDamaged) -> Response:
        # A damaged FAISS file is never answered as "nothing similar"; the reason (file
        # paths) goes to the log only. `tvindex vectors sync` (or `index`) repairs it.
        log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(503, exc.public_message(), code="vectors_damaged")

    @app.errorhandler(StoreUnavailable)
    def _unavailable(exc: StoreUnavailable) -> Response:
        # The detail (backend URL, the driver's exception) goes to the log only: it names
        # internals a client has no use for.
        log.error("store unavailable on %s %s: %s", request.method, request.path, exc)
        return error_response(503, UNAVAILABLE_MESSAGE, code="store_unavailable",
                              retry_after=RETRY_AFTER_S)

    @app.errorhandler(CatalogueCorrupt)
    def _corrupt(exc: CatalogueCorrupt) -> Response:
        # The file's path and SQLite's findings go to the log only.
        log.error("catalogue damaged on %s %s: %s", request.method, request.path, exc)
        return error_response(503, "the catalogue is damaged; the operator must restore it "
                                   "(see the server log)", code="catalogue_damaged")

    @app.errorhandler(CatalogueReadOnly)
    def _read_only(exc: CatalogueReadOnly) -> Response:
        log.warning("refused on a read-only catalogue: %s %s", request.method, request.path)
        return error_response(409, "the catalogue is read-only on this server", code="read_only")

    @app.errorhandler(StoreError)
    def _store(exc: StoreError) -> Response:
        return error_response(400, str(exc), code="bad_request")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, InternalServerError.description, code="internal")
