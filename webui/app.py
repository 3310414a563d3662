"""The application factory: ``create_app(settings, store=None)``.

The same application object serves tests (``app.test_client()``) and production
(``tvindex serve``, waitress). Nothing happens at import: the store is opened here, per app.
"""

from __future__ import annotations

import html
import re
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from search.store import open_store
from tvindex.core.labels import role_of
from tvindex.core.store import CatalogueStore
from webui.context import WebContext
from webui.cors import Cors
from webui.errors import HostNotAllowed, error_response, register_error_handlers
from webui.example import InMemoryRequest
from webui.http_cache import StaticVersions, Validators, install_compression
from webui.http_cache import after_request as cache_headers
from webui.rate_limit import RateLimited, RateLimiter
from webui.timeline import format_time
from webui.vocabulary import display_name, label_query, stand_in_note

# Scripts, styles, images and media only from this server; no inline script or style; no
# framing. Inline SVG in the pages needs no exception (it carries no script or style).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# The routes that take a picture (query by example): their bodies are bounded by
# server.max_upload_bytes instead of server.max_request_bytes.
UPLOAD_ENDPOINTS = frozenset({"api.similar_to_example", "pages.similar"})


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(server: Any) -> frozenset[str] | None:
    """The host names (lower case, no port, IPv6 without brackets) the server answers to;
    None when any is allowed (``server.allowed_hosts: ["*"]``)."""
    names = server.allowed_hosts
    if names is None:
        names = [*LOOPBACK_NAMES, server.host]
    if "*" in names:
        return None
    return frozenset(host_name(n) for n in names if n)


def host_name(value: str) -> str:
    """``Host`` header value -> the name alone: ``[::1]:8080`` -> ``::1``, ``Example:80`` ->
    ``example``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.partition(":")[0] if value.count(":") <= 1 else value


def host_allowed(name: str, allowed: frozenset[str]) -> bool:
    return name in allowed or any(
        a.startswith(".") and (name == a[1:] or name.endswith(a)) for a in allowed)


AXIS_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0)


def axis_max(values: Any) -> float:
    """The smallest round axis end (<= 1) that holds every value: small softmax scores
    still get readable bars."""
    top = max((float(v) for v in values), default=0.0)
    return next((step for step in AXIS_STEPS if top <= step), 1.0)


def snippet_parts(snippet: str) -> list[tuple[str, bool]]:
    """A word snippet (``search.words``: HTML-escaped text with ``<mark>`` around matched
    words) as plain ``(text, marked)`` parts, which the template escapes again itself: no
    markup from data ever reaches a page unescaped."""
    parts: list[tuple[str, bool]] = []
    for i, piece in enumerate(re.split(r"</?mark>", snippet)):
        if piece:
            parts.append((html.unescape(piece), i % 2 == 1))
    return parts


def create_app(settings: Any, store: CatalogueStore | None = None) -> Flask:
    """Build the web application over ``store`` (opened from ``settings`` when None, and
    closed with the app). ``settings`` is a ``tvindex.settings.Settings``."""
    from webui import api, docs, media, pages

    app = Flask(__name__)
    app.request_class = InMemoryRequest  # uploads are never written to temporary files
    app.config.update(
        MAX_CONTENT_LENGTH=settings.server.max_request_bytes,
        # Form data is parsed with the same bound.
        MAX_FORM_MEMORY_SIZE=settings.server.max_request_bytes,
        SEND_FILE_MAX_AGE_DEFAULT=300,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.merge_slashes = False  # odd paths are 404s, not redirects to other paths
    app.debug = False
    context = WebContext(settings, store or open_store(settings), owns_store=store is None)
    app.extensions["tvindex"] = context

    app.register_blueprint(pages.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(api.bp, url_prefix="/api/v1")
    app.register_blueprint(docs.bp)
    register_error_handlers(app)

    app.jinja_env.filters["clock"] = format_time
    app.jinja_env.filters["snippet_parts"] = snippet_parts
    # A label set's name for editors (vocabulary.display_names) and its role.
    app.jinja_env.globals["set_title"] = lambda name: display_name(settings, name)
    app.jinja_env.globals["set_role"] = role_of
    app.jinja_env.globals["stand_in_note"] = stand_in_note
    app.jinja_env.globals["label_query"] = label_query
    app.jinja_env.globals["axis_max"] = axis_max

    hosts = allowed_hosts(settings.server)
    compress = install_compression(app)
    validators = Validators(context.store, settings)
    static_versions = StaticVersions(app)
    app.url_defaults(static_versions.add_version)
    cors = Cors(settings.server.cors_origins)
    limiter = RateLimiter(settings.server.rate_limit_per_minute,
                          settings.server.rate_limit_burst)

    @app.before_request
    def _allowed_host() -> None:
        # DNS rebinding: a page of another site whose name now points here sends its own
        # name as Host. A request without Host (HTTP/1.0, not a browser) is let through.
        raw = request.environ.get("HTTP_HOST")
        if hosts is None or raw is None:
            return
        name = host_name(raw)
        if not host_allowed(name, hosts):
            raise HostNotAllowed(f"host {name[:100]!r} is not served here (server.allowed_hosts)")

    @app.before_request
    def _rate_limit() -> Response | None:
        # Per TCP peer (a reverse proxy's address for all its clients: see rate_limit.py).
        try:
            limiter.take(request.remote_addr or "")
        except RateLimited as exc:
            resp = error_response(429, "too many requests from this address "
                                       f"(server.rate_limit_per_minute); retry in "
                                       f"{exc.retry_after_s} s",
                                  code="rate_limited", retry_after=exc.retry_after_s)
            return resp
        return None

    @app.before_request
    def _preflight_and_conditional() -> Response | None:
        return cors.preflight() or validators.not_modified()

    @app.before_request
    def _bounded_body() -> None:
        # Flask only enforces MAX_CONTENT_LENGTH when a view reads the body; refuse early so
        # that no endpoint depends on reading it. The upload routes have their own, larger
        # (or smaller) bound, which also applies while a body without a length is read.
        limit, name = app.config["MAX_CONTENT_LENGTH"], "server.max_request_bytes"
        if request.endpoint in UPLOAD_ENDPOINTS and request.method == "POST":
            limit, name = settings.server.max_upload_bytes, "server.max_upload_bytes"
            request.max_content_length = limit
            # Werkzeug's multipart decoder also holds up to a read buffer (64 KiB) of a file
            # part under this bound: the whole body's bound is the one that matters here.
            request.max_form_memory_size = limit
        if request.content_length is not None and request.content_length > limit:
            raise RequestEntityTooLarge(
                f"request body of {request.content_length} bytes is over the limit of "
                f"{limit} bytes ({name})")

    @app.context_processor
    def _limits() -> dict[str, Any]:
        return {"max_query_length": context.max_query_length,
                "max_upload_bytes": context.max_upload_bytes}

    @app.after_request
    def _headers(resp: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
        cors.headers(resp)
        # Validators, Cache-Control (API: no-cache where revalidated, else no-store), then
        # compression: see http_cache.py.
        return cache_headers(resp, compress, validators, static_versions)

    return app


def close_app(app: Flask) -> None:
    """Close the store if the app opened it."""
    context: WebContext = app.extensions["tvindex"]
    if context.owns_store:
        context.store.close()
