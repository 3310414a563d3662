"""Compression, validators and Cache-Control: what HTTP caches and clients may keep.

- **Compression** (``flask-compress``): br or gzip, as ``Accept-Encoding`` asks, for text and
  JSON bodies of at least ``MIN_COMPRESS_BYTES``; ``Vary: Accept-Encoding``. Bodies sent in
  pieces (media, static files) and partial answers (206) are never compressed, so byte ranges
  stay ranges of the file. A compressed answer's strong ETag gets the encoding appended
  (``"tag:gzip"``), so each encoding is its own representation.
- **Validators** of the JSON API: an answer is a function of the catalogue (its write
  version, ``CatalogueReader.catalogue_version``), the URL with its query, and the server's
  configuration and code; its ``ETag`` is a hash of those, and ``Last-Modified`` the time this
  server first saw that write version. ``If-None-Match`` with a current tag is a 304 before
  the view runs (no search is run again). After a write (an index run) every tag changes.
  A backend that cannot tell its version (None) gets no validators.
- **Cache-Control**: API JSON ``no-cache`` (stored, revalidated on every use); errors, POST
  answers, the health check and anything unlisted stay ``no-store``; static files linked with
  their content hash (``?v=``) ``public, max-age=31536000, immutable``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from flask_compress import Compress

from tvindex import __version__
from tvindex.core.store import CatalogueStore, StoreError

MIN_COMPRESS_BYTES = 500
IMMUTABLE = "public, max-age=31536000, immutable"
# API GET endpoints whose answer depends only on the catalogue, the URL and the configuration.
# Left out: the health check (it checks the file's integrity now), and the similar-items
# routes (they also read the vector indexes, synced after a write).
VALIDATED_ENDPOINTS = frozenset({
    "api.openapi_document", "api.search", "api.suggest", "api.labels", "api.programmes",
    "api.programme", "api.episode", "api.timeline", "api.shot"})
REVALIDATED_ENDPOINTS = VALIDATED_ENDPOINTS | {
    "api.similar", "api.similar_episodes", "api.similar_shots"}


def install_compression(app: Flask) -> Compress:
    """flask-compress over ``app``, called from :func:`after_request` (not registered by the
    library itself) so that partial answers are skipped."""
    app.config.update(
        COMPRESS_REGISTER=False,
        COMPRESS_ALGORITHM=["br", "gzip"],
        COMPRESS_MIN_SIZE=MIN_COMPRESS_BYTES,
        COMPRESS_STREAMS=False,  # media and static files are sent in pieces, as they are
        # Conditional requests are answered by this module (validators), before the view.
        COMPRESS_EVALUATE_CONDITIONAL_REQUEST=False,
        COMPRESS_MIMETYPES=["application/json", "application/problem+json", "text/html",
                            "text/css", "text/plain", "text/javascript",
                            "application/javascript", "image/svg+xml"],
    )
    return Compress(app)


def settings_digest(settings: Any) -> str:
    """A hash of the configuration and code version: answers for one catalogue version
    differ when either changes. The API key is left out."""
    data = settings.model_dump(mode="json")
    data.get("server", {}).pop("api_key", None)
    text = json.dumps(data, sort_keys=True, default=str) + __version__
    return hashlib.sha256(text.encode()).hexdigest()


class Validators:
    """ETags and Last-Modified of one application's API answers."""

    def __init__(self, store: CatalogueStore, settings: Any) -> None:
        self.store = store
        self.salt = settings_digest(settings)
        self._lock = threading.Lock()
        # (version, first seen (epoch s), whether an earlier version was first seen in the
        # same second: then Last-Modified cannot tell them apart, and If-Modified-Since is
        # not answered 304).
        self._seen: tuple[object, float, bool] | None = None

    def current(self) -> tuple[str, float, bool] | None:
        """(ETag of this request's answer, Last-Modified, whether that time tells the version
        apart) or None when the store cannot tell its version."""
        try:
            version = self.store.catalogue_version()
        except StoreError:
            return None  # the view answers the store's error
        if version is None:
            return None
        now = time.time()
        with self._lock:
            seen = self._seen
            if seen is None or seen[0] != version:
                shared = seen is not None and int(seen[1]) == int(now)
                seen = self._seen = (version, now, shared)
        key = f"{self.salt}\n{version!r}\n{request.url}"
        tag = hashlib.sha256(key.encode()).hexdigest()[:32]
        return tag, seen[1], not seen[2]

    def not_modified(self) -> Response | None:
        """Before the view: a 304 for a GET/HEAD whose validators are current. Otherwise the
        validators read now (before the answer is built: a write while the view runs only
        makes the tag older than the answer, never newer) are kept for :meth:`annotate`."""
        if request.method not in ("GET", "HEAD") or request.endpoint not in VALIDATED_ENDPOINTS:
            return None
        found = g.tvindex_validators = self.current()
        if found is None:
            return None
        tag, modified, exact = found
        match = _matching_tag(tag)
        if match is None:
            if "If-None-Match" in request.headers or not exact:
                return None
            since = _http_date(request.headers.get("If-Modified-Since"))
            if since is None or int(modified) > since:
                return None
            match = tag
        resp = Response(status=304)
        resp.set_etag(match)
        _set_validators(resp, modified)
        return resp

    def annotate(self, resp: Response) -> None:
        """ETag and Last-Modified on a 200 JSON answer of a validated endpoint."""
        if (request.endpoint in VALIDATED_ENDPOINTS and request.method in ("GET", "HEAD")
                and resp.status_code == 200 and "ETag" not in resp.headers):
            found = g.get("tvindex_validators")
            if found is not None:
                resp.set_etag(found[0])
                _set_validators(resp, found[1])


def _set_validators(resp: Response, modified: float) -> None:
    resp.last_modified = datetime.fromtimestamp(int(modified), UTC)
    resp.headers["Cache-Control"] = "no-cache"
    resp.vary.add("Accept-Encoding")


def _matching_tag(tag: str) -> str | None:
    """The tag of ``If-None-Match`` (weak comparison) that names this answer in any encoding
    (``tag`` or ``tag:<encoding>``), or None."""
    for value in request.if_none_match.as_set(include_weak=True):
        if value == tag or value.startswith(tag + ":"):
            return value
    if request.if_none_match.star_tag:
        return tag
    return None


def _http_date(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class StaticVersions:
    """``?v=<content hash>`` on every ``url_for('static', ...)``: such URLs are cached for a
    year (``immutable``); a new file has a new hash, hence a new URL."""

    def __init__(self, app: Flask) -> None:
        self.folder = Path(app.static_folder or "")
        self._hashes: dict[str, str] = {}

    def version(self, filename: str) -> str | None:
        if filename not in self._hashes:
            try:
                data = (self.folder / filename).resolve().read_bytes()
            except OSError:
                return None
            self._hashes[filename] = hashlib.sha256(data).hexdigest()[:16]
        return self._hashes[filename]

    def add_version(self, endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static" and "v" not in values and "filename" in values:
            version = self.version(str(values["filename"]))
            if version:
                values["v"] = version

    def cache_control(self, resp: Response) -> None:
        if request.endpoint != "static" or resp.status_code not in (200, 206, 304):
            return
        filename = (request.view_args or {}).get("filename")
        wanted = request.args.get("v")
        if wanted and filename and wanted == self.version(str(filename)):
            resp.headers["Cache-Control"] = IMMUTABLE


def after_request(resp: Response, compress: Compress, validators: Validators,
                  static: StaticVersions) -> Response:
    """Validators, Cache-Control and compression of one answer (in that order)."""
    validators.annotate(resp)
    static.cache_control(resp)
    if request.path.startswith("/api/") and "Cache-Control" not in resp.headers:
        revalidate = (request.endpoint in REVALIDATED_ENDPOINTS and resp.status_code == 200
                      and request.method in ("GET", "HEAD"))
        resp.headers["Cache-Control"] = "no-cache" if revalidate else "no-store"
    if resp.status_code == 206 or "Content-Range" in resp.headers:
        return resp
    return compress.after_request(resp)
