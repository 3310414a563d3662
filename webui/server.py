"""The waitress server around the app, hardened against slow and malformed clients.

- Connections: at most ``server.connection_limit`` open at once (more wait in the listen
  backlog, ``server.backlog``), polled with ``poll()`` so that more than 1024 fit.
- Slow clients (slow-loris): a connection idle for ``server.channel_timeout_s`` is closed; a
  request whose headers are not all in ``server.header_timeout_s`` after its first byte, or
  which is not whole (headers and body) within ``server.request_timeout_s``, is closed too,
  however slowly it keeps dripping bytes.
- Errors waitress answers itself (a malformed request line, headers over the limit: 431, a
  body over the limit: 413) are the app's RFC 9457 problem details
  (``application/problem+json``, see ``webui/errors.py``) with its security headers.
"""

from __future__ import annotations

import json
import time
from typing import Any

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask

from webui.app import SECURITY_HEADERS
from webui.errors import PROBLEM_MEDIA_TYPE, problem, status_code_name

MAX_REQUEST_HEADER_BYTES = 64 * 1024


class JsonErrorTask(ErrorTask):
    """waitress's own error answers, as the app's problem details with its headers."""

    def execute(self) -> None:
        error = self.request.error
        detail = " ".join(str(error.body).split())
        message = f"{error.reason.lower()}: {detail}" if detail else error.reason.lower()
        # The path, when the request line got that far (never its query: it may be huge).
        path = getattr(self.request, "path", "") or None
        body = json.dumps(problem(error.code, status_code_name(error.code), message,
                                  path)).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", PROBLEM_MEDIA_TYPE))
        self.response_headers.extend(SECURITY_HEADERS.items())
        self.response_headers.append(("Cache-Control", "no-store"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class BoundedChannel(HTTPChannel):
    """A connection whose requests must arrive in bounded time (see the module's text)."""

    error_task_class = JsonErrorTask
    header_timeout = 10.0
    request_timeout = 60.0
    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        if data and self.request is None and self.request_started is None:
            self.request_started = time.monotonic()
        done = super().received(data)
        if self.request is None:  # every request read so far is whole
            self.request_started = None
        return done

    def readable(self) -> bool:
        # Called by the server's loop for every connection on every turn (at least once a
        # second): the place to notice a request that takes too long to arrive.
        started = self.request_started
        if started is not None and not self.will_close:
            age = time.monotonic() - started
            headers_done = self.request is not None and self.request.headers_finished
            if age > self.request_timeout or (not headers_done and age > self.header_timeout):
                self.will_close = True  # writable() turns true; the loop closes it
        return super().readable()


def create_server(app: Any, server: Any) -> Any:
    """A waitress server for ``app`` on ``server.host``/``server.port`` (``server``: the
    ``ServerSettings``), not yet running; ``.run()`` serves, ``.effective_port`` tells the
    port bound."""
    channel = type("Channel", (BoundedChannel,), {
        "header_timeout": float(server.header_timeout_s),
        "request_timeout": float(server.request_timeout_s)})
    socket_map: dict = {}
    wsgi_server = waitress.create_server(
        app, map=socket_map, host=server.host, port=server.port, threads=server.threads,
        # Image uploads (POST /api/v1/similar) may be larger; the app bounds every route.
        max_request_body_size=max(server.max_request_bytes, server.max_upload_bytes),
        max_request_header_size=MAX_REQUEST_HEADER_BYTES, ident="tvindex",
        clear_untrusted_proxy_headers=True, connection_limit=server.connection_limit,
        channel_timeout=server.channel_timeout_s,
        cleanup_interval=max(1.0, min(30.0, server.channel_timeout_s / 2)),
        backlog=server.backlog, asyncore_use_poll=True)
    for listener in list(socket_map.values()):
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = channel
    return wsgi_server
