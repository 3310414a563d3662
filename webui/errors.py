"""Errors: JSON ``{"error": {"status", "message"[, "column"]}}`` under /api, an HTML page
elsewhere. A message says what was wrong; a 500 never shows a traceback."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
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
# Seconds a client is asked to wait after a 503 (the store is unreachable): the store's own
# bounded retries have already been spent on this request.
RETRY_AFTER_S = 30
UNAVAILABLE_MESSAGE = "the catalogue store is unavailable; try again later"


class BadParameter(BadRequest):
    """A request parameter is missing or invalid; ``description`` says which and why."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.column = column


def wants_json() -> bool:
    return request.path.startswith(API_PREFIX)


def error_response(status: int, message: str, column: int | None = None) -> Response:
    if wants_json():
        body: dict = {"status": status, "message": message}
        if column is not None:
            body["column"] = column
        resp = jsonify({"error": body})
        resp.status_code = status
        return resp
    html = render_template("error.html", status=status, message=message)
    return Response(html, status=status, mimetype="text/html")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        message = exc.description or exc.name
        if exc.code == 404 and message == HTTPNotFound.description:
            message = f"no such resource: {request.path}"
        resp = error_response(exc.code or 500, message, getattr(exc, "column", None))
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            resp.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return resp

    @app.errorhandler(QueryError)
    def _query(exc: QueryError) -> Response:
        return error_response(400, exc.message, exc.column)

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound) -> Response:
        return error_response(404, str(exc))

    @app.errorhandler(RecommendError)
    def _recommend(exc: RecommendError) -> Response:
        # The request is fine; the catalogue cannot answer it (no embeddings, another model).
        return error_response(409, str(exc))

    @app.errorhandler(VectorsDamaged)
    def _vectors_damaged(exc: VectorsDamaged) -> Response:
        # A damaged FAISS file is never answered as "nothing similar"; the reason (file
        # paths) goes to the log only. `tvindex vectors sync` (or `index`) repairs it.
        log.error("%s %s: %s", request.method, request.path, exc)
        return error_response(503, exc.public_message())

    @app.errorhandler(StoreUnavailable)
    def _unavailable(exc: StoreUnavailable) -> Response:
        # The detail (backend URL, the driver's exception) goes to the log only: it names
        # internals a client has no use for.
        log.error("store unavailable on %s %s: %s", request.method, request.path, exc)
        resp = error_response(503, UNAVAILABLE_MESSAGE)
        resp.headers["Retry-After"] = str(RETRY_AFTER_S)
        return resp

    @app.errorhandler(CatalogueCorrupt)
    def _corrupt(exc: CatalogueCorrupt) -> Response:
        # The file's path and SQLite's findings go to the log only.
        log.error("catalogue damaged on %s %s: %s", request.method, request.path, exc)
        return error_response(503, "the catalogue is damaged; the operator must restore it "
                                   "(see the server log)")

    @app.errorhandler(CatalogueReadOnly)
    def _read_only(exc: CatalogueReadOnly) -> Response:
        log.warning("refused on a read-only catalogue: %s %s", request.method, request.path)
        return error_response(409, "the catalogue is read-only on this server")

    @app.errorhandler(StoreError)
    def _store(exc: StoreError) -> Response:
        return error_response(400, str(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, InternalServerError.description)

