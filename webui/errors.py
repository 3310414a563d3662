"""Errors: JSON ``{"error": {"status", "message"[, "column"]}}`` under /api, an HTML page
elsewhere. A message says what was wrong; a 500 never shows a traceback."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError
from werkzeug.exceptions import NotFound as HTTPNotFound

from search.query import QueryError
from search.recommend import RecommendError
from tvindex.core.store import NotFound, StoreError

log = logging.getLogger(__name__)
API_PREFIX = "/api/"


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

    @app.errorhandler(StoreError)
    def _store(exc: StoreError) -> Response:
        return error_response(400, str(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, InternalServerError.description)

