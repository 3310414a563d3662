"""Talking to an Elasticsearch cluster: connection settings, bounded retries with backoff,
error translation, and bulk writes that never drop a document silently.

Only the official ``elasticsearch`` client (8.x API) is used. Every call goes through
:meth:`EsClient.call`, which retries transient failures (connection refused or reset,
timeouts, HTTP 429/502/503/504) ``max_retries`` times with exponential backoff and then raises
:class:`tvindex.core.store.StoreUnavailable`; rejected credentials and other refusals become a
:class:`tvindex.core.store.StoreError` with a message that says what to check.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from tvindex.core.store import StoreError, StoreUnavailable
from tvindex.settings import ElasticsearchSettings

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 502, 503, 504})
BULK_MAX_DOCS = 500
BULK_MAX_BYTES = 8 << 20


def redacted_url(url: str) -> str:
    """The URL without any user:password part, for messages."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


def make_client(cfg: ElasticsearchSettings):
    """An ``elasticsearch.Elasticsearch`` for the ``elasticsearch`` settings section (the
    transport does not retry:
    :class:`EsClient` does, with backoff)."""
    try:
        from elasticsearch import Elasticsearch
    except ModuleNotFoundError as exc:
        raise StoreError("the elasticsearch backend needs the official client: "
                         "pip install 'tvindex[es]' (elasticsearch>=8,<9)") from exc

    kwargs: dict[str, Any] = {"request_timeout": cfg.request_timeout_s, "max_retries": 0,
                              "retry_on_timeout": False}
    if cfg.api_key:
        kwargs["api_key"] = cfg.api_key
    elif cfg.username:
        kwargs["basic_auth"] = (cfg.username, cfg.password or "")
    if cfg.url.startswith("https"):
        kwargs["verify_certs"] = cfg.verify_certs
        if cfg.ca_certs:
            kwargs["ca_certs"] = str(cfg.ca_certs)
        if not cfg.verify_certs:
            kwargs["ssl_show_warn"] = False
    # Our own retries log what matters; the transport's per-node "putting on timeout" warnings
    # would only repeat it.
    logging.getLogger("elastic_transport.node_pool").setLevel(logging.ERROR)
    return Elasticsearch(cfg.url, **kwargs)


class EsClient:
    """A client with bounded retries and our error types. ``es`` is the official client;
    ``cfg`` the ``elasticsearch`` settings section (``tvindex.settings``), whose defaults
    (``config/default.yaml``) are the only ones."""

    def __init__(self, cfg: ElasticsearchSettings, es: Any | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg = cfg
        self.es = es if es is not None else make_client(cfg)
        self._sleep = sleep

    def close(self) -> None:
        self.es.close()

    def _delay(self, attempt: int) -> float:
        return self.cfg.retry_backoff_s * (2 ** attempt)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with bounded retries of transient failures. Not-found and
        conflict errors pass through unchanged (callers handle them)."""
        from elasticsearch import (
            ApiError,
            AuthenticationException,
            AuthorizationException,
            SSLError,
            TransportError,
        )

        last: BaseException | None = None
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return fn(*args, **kwargs)
            except SSLError as exc:
                raise StoreError(
                    f"TLS handshake with {redacted_url(self.cfg.url)} failed ({exc}); check "
                    "elasticsearch.ca_certs / verify_certs") from exc
            except AuthenticationException as exc:
                raise StoreError(
                    f"Elasticsearch at {redacted_url(self.cfg.url)} rejected the credentials "
                    "(HTTP 401); check elasticsearch.api_key or username/password "
                    "(TVINDEX__ELASTICSEARCH__API_KEY, ...)") from exc
            except AuthorizationException as exc:
                raise StoreError(
                    f"Elasticsearch at {redacted_url(self.cfg.url)} refused {what} (HTTP 403: "
                    f"{_reason(exc)}); the credentials lack a privilege on "
                    f"{self.cfg.index_prefix}* indices") from exc
            except ApiError as exc:
                if exc.meta.status not in RETRY_STATUS:
                    raise
                last = exc
            except TransportError as exc:  # connection refused/reset, timeout
                last = exc
            if attempt < self.cfg.max_retries:
                log.info("elasticsearch %s failed (%s); retry %d/%d in %.2f s", what, last,
                         attempt + 1, self.cfg.max_retries, self._delay(attempt))
                self._sleep(self._delay(attempt))
        raise StoreUnavailable(
            f"Elasticsearch at {redacted_url(self.cfg.url)} is unavailable ({what} failed "
            f"{self.cfg.max_retries + 1} times): {_reason(last)}") from last

    # --- bulk ----------------------------------------------------------------------------
    def bulk(self, actions: Iterable[tuple[dict[str, Any], dict[str, Any] | None]],
             what: str = "bulk", refresh: bool | str = False,
             conflicts: list[str] | None = None) -> int:
        """Send ``(action, source)`` pairs in chunks (``source`` None for deletes). Items that
        fail with a retryable status are re-sent with backoff; anything still failing raises
        :class:`StoreError` naming the documents (``StoreUnavailable`` when every remaining
        failure was transient). A delete of a missing document is not a failure; with
        ``conflicts`` given, neither is a 409 (a ``create`` of an existing document): its id
        is appended there. Returns how many items succeeded."""
        done = 0
        for chunk in _chunks(actions):
            done += self._bulk_chunk(chunk, what, refresh, conflicts)
        return done

    def _bulk_chunk(self, chunk: list[tuple[dict[str, Any], dict[str, Any] | None]],
                    what: str, refresh: bool | str, conflicts: list[str] | None) -> int:
        pending = chunk
        done = 0
        failures: list[tuple[str, int, str]] = []
        for attempt in range(self.cfg.max_retries + 1):
            ops: list[dict[str, Any]] = []
            for action, source in pending:
                ops.append(action)
                if source is not None:
                    ops.append(source)
            resp = self.call(what, self.es.bulk, operations=ops, refresh=refresh)
            retry: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
            failures = []
            for (action, source), item in zip(pending, resp["items"], strict=True):
                op, result = next(iter(item.items()))
                status = int(result.get("status", 500))
                if status < 300 or (op == "delete" and status == 404):
                    done += 1
                    continue
                if status == 409 and conflicts is not None:
                    conflicts.append(str(result.get("_id")))
                    continue
                doc = result.get("_id") or next(iter(action.values())).get("_id")
                reason = _item_reason(result)
                failures.append((str(doc), status, reason))
                if status in RETRY_STATUS:
                    retry.append((action, source))
            if not failures:
                return done
            if len(retry) < len(failures) or attempt == self.cfg.max_retries:
                break
            pending = retry
            log.info("%s: %d item(s) rejected (%s); retry %d/%d", what, len(retry),
                     failures[0][2], attempt + 1, self.cfg.max_retries)
            self._sleep(self._delay(attempt))
        names = ", ".join(f"{d} ({s}: {r})" for d, s, r in failures[:5])
        more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
        cls = StoreUnavailable if all(s in RETRY_STATUS for _, s, _ in failures) else StoreError
        raise cls(f"{what}: {len(failures)} of {len(chunk)} document(s) were not written: "
                  f"{names}{more}")


def _chunks(actions: Iterable[tuple[dict[str, Any], dict[str, Any] | None]]
            ) -> Iterable[list[tuple[dict[str, Any], dict[str, Any] | None]]]:
    chunk: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    size = 0
    for action, source in actions:
        n = len(json.dumps(source, separators=(",", ":"))) if source is not None else 64
        if chunk and (len(chunk) >= BULK_MAX_DOCS or size + n > BULK_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((action, source))
        size += n
    if chunk:
        yield chunk


def _item_reason(result: dict[str, Any]) -> str:
    err = result.get("error")
    if isinstance(err, dict):
        return f"{err.get('type', 'error')}: {err.get('reason', '')}"[:200]
    return str(err)[:200] if err else "unknown error"


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no attempt was made"
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('type', '')}: {err.get('reason', '')}".strip(": ")
    detail = getattr(exc, "message", None) or str(exc)
    return f"{type(exc).__name__}: {detail}"
