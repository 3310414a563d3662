"""CORS for the JSON API: an allow-list of origins (``server.cors_origins``), none by default.

An allowed origin's requests to ``/api/`` get ``Access-Control-Allow-Origin: <origin>`` (never
``*``; no credentials: the API key is a header, not a cookie) and ``Vary: Origin``; its
preflight ``OPTIONS`` is answered 204 with the methods (GET, HEAD, POST) and request headers
(``Content-Type``, ``X-API-Key``) the API takes. Any other origin gets no CORS header, and its
preflight a 403. With an empty list nothing here runs: no CORS header at all.
"""

from __future__ import annotations

from flask import Response, request
from werkzeug.exceptions import Forbidden

ALLOWED_METHODS = ("GET", "HEAD", "POST")
ALLOWED_HEADERS = ("content-type", "x-api-key")
EXPOSED_HEADERS = "ETag, Last-Modified, Retry-After"
PREFLIGHT_MAX_AGE_S = 600


class Cors:
    def __init__(self, origins: list[str]) -> None:
        self.origins = frozenset(o.lower() for o in origins)

    @property
    def enabled(self) -> bool:
        return bool(self.origins)

    def _applies(self) -> bool:
        return self.enabled and request.path.startswith("/api/")

    def _allowed_origin(self) -> str | None:
        origin = request.headers.get("Origin")
        return origin if origin and origin.lower() in self.origins else None

    @staticmethod
    def _is_preflight() -> bool:
        return (request.method == "OPTIONS" and "Origin" in request.headers
                and "Access-Control-Request-Method" in request.headers)

    def preflight(self) -> Response | None:
        """Before the view: the answer to a CORS preflight of the API, else None."""
        if not (self._applies() and self._is_preflight()):
            return None
        origin = self._allowed_origin()
        if origin is None:
            raise Forbidden(f"origin {request.headers['Origin'][:100]!r} may not call this "
                            "API from a browser (server.cors_origins)")
        method = request.headers["Access-Control-Request-Method"].strip().upper()
        asked = {h.strip().lower() for h in
                 request.headers.get("Access-Control-Request-Headers", "").split(",")
                 if h.strip()}
        if method not in ALLOWED_METHODS or not asked <= set(ALLOWED_HEADERS):
            raise Forbidden(f"a cross-origin {method[:20]} with headers "
                            f"{', '.join(sorted(asked))[:200] or 'none'} is not allowed: "
                            f"methods {', '.join(ALLOWED_METHODS)}, headers Content-Type, "
                            "X-API-Key")
        resp = Response(status=204)
        resp.headers["Access-Control-Allow-Methods"] = ", ".join(ALLOWED_METHODS)
        resp.headers["Access-Control-Allow-Headers"] = "Content-Type, X-API-Key"
        resp.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
        return resp

    def headers(self, resp: Response) -> None:
        """After the view (every API answer, errors too): the CORS headers for an allowed
        origin; ``Vary: Origin`` on every API answer, since the headers depend on it."""
        if not self._applies():
            return
        resp.vary.add("Origin")
        origin = self._allowed_origin()
        refused_preflight = self._is_preflight() and resp.status_code != 204
        if origin is not None and not refused_preflight:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
