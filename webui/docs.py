"""The API's documentation page, ``/api/docs``: Swagger UI over ``/api/v1/openapi.json``.

Everything comes from this server. Swagger UI (version 5, which reads OpenAPI 3.1) is the copy
the flask-swagger-ui package ships in its ``dist`` folder: only those static files are used,
not the package's blueprint (whose page has an inline script). The few files the page loads are served
under ``/api/docs/assets/``; the start-up code is our ``static/api-docs.js``, so the page needs
no inline script. The public validator badge is off (``validatorUrl: null``), so the page
makes no request outside the server.

The page keeps the site's Content-Security-Policy unchanged (``webui.app.CSP``: scripts and
styles from this server only, none inline): Swagger UI sets its inline styles through the DOM
(``element.style``), which ``style-src 'self'`` allows, and its "Try it out" calls stay on
this server (``connect-src 'self'``). ``tests/test_webui_browser.py`` checks that no violation
is reported.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, abort, render_template, send_from_directory

bp = Blueprint("docs", __name__)

SWAGGER_PACKAGE = "flask_swagger_ui"
# The Swagger UI files the page loads; nothing else from the package is served.
ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})
ASSET_MAX_AGE_S = 86400


@cache
def swagger_dist() -> Path:
    """The folder of Swagger UI's files inside the installed flask-swagger-ui package (found
    without importing it)."""
    spec = importlib.util.find_spec(SWAGGER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("flask-swagger-ui is not installed (pip install flask-swagger-ui)")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


def swagger_version() -> str:
    try:
        return (swagger_dist() / "VERSION").read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"


@bp.get("/api/docs")
def api_docs() -> Response:
    return Response(render_template("api_docs.html", swagger_version=swagger_version()),
                    mimetype="text/html")


@bp.get("/api/docs/assets/<name>")
def asset(name: str) -> Response:
    if name not in ASSETS:
        abort(404)
    return send_from_directory(swagger_dist(), name, max_age=ASSET_MAX_AGE_S)
