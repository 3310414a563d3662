"""Cursor paging for search, stable under concurrent writes.

Scores of programmes and episodes change when their episodes are written, so paging by
(score, id) is not stable. Instead the first page keeps the query's ranked hits (up to
:data:`MAX_CURSOR_HITS`) in a :class:`SnapshotCache` (bounded LRU with a TTL); the cursor
names that snapshot, the query text, level, page size, position and the catalogue's write
version at the first page, and later pages are cut from the snapshot. A client that follows
the cursors to the end therefore sees each hit of the first page's ranking exactly once,
whatever is written meanwhile. When the snapshot is gone (evicted, expired, another process)
the page is recomputed if the catalogue's write version is unchanged (the same ranking);
otherwise :class:`CursorExpired`.

Cursors are base64url JSON with an HMAC (:class:`CursorCodec`); a damaged or forged one, or
one for another query, level, page size, sort or score floor, is :class:`CursorInvalid`. The
sort and ``min_score`` travel in the cursor (a snapshot is the ranking in that order).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from search.engine import best_shots, check_options, resolve, run_search, search_resolved
from tvindex.core.records import Hit, SearchPage
from tvindex.core.store import CatalogueReader

MAX_CURSOR_HITS = 10_000  # the deepest hit a cursor reaches (like Elasticsearch's window)
SNAPSHOT_ENTRIES = 256
SNAPSHOT_TTL_S = 600.0
SNAPSHOT_MAX_HITS = 200_000  # hits kept over all snapshots together
_VERSION_TRIES = 3


class CursorInvalid(ValueError):
    """A damaged or forged cursor, or one for another query, level or page size (HTTP 400)."""


class CursorExpired(ValueError):
    """The cursor's snapshot is gone and the catalogue changed since (HTTP 410)."""


EXPIRED = ("the cursor expired (its result list is no longer kept and the catalogue changed "
           "since the first page); start again without a cursor")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _version_token(version: object) -> str | None:
    return None if version is None else str(version)


@dataclass(frozen=True)
class Cursor:
    q: str
    level: str
    limit: int
    position: int
    version: str | None  # the catalogue's write version at the first page
    snapshot: str  # the snapshot's id ("" when none was kept)
    sort: str = "score"  # as given (search.ranking.parse_sort)
    min_score: float = 0.0


class CursorCodec:
    """Encodes and checks cursors. The key is random per process unless given."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(32)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:16]

    def encode(self, c: Cursor) -> str:
        fields: dict[str, Any] = {"q": c.q, "l": c.level, "n": c.limit, "p": c.position,
                                  "v": c.version, "s": c.snapshot}
        if c.sort != "score":
            fields["o"] = c.sort
        if c.min_score:
            fields["m"] = c.min_score
        body = json.dumps(fields, separators=(",", ":"), sort_keys=True).encode()
        return _b64(body) + "." + _b64(self._mac(body))

    def decode(self, token: str) -> Cursor:
        bad = CursorInvalid("the cursor is damaged, or was issued by another server process; "
                            "start again without a cursor")
        try:
            body_text, mac_text = token.strip().split(".")
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, binascii.Error):
            raise bad from None
        if not hmac.compare_digest(mac, self._mac(body)):
            raise bad
        try:
            d = json.loads(body)
            c = Cursor(d["q"], d["l"], d["n"], d["p"], d["v"], d["s"], d.get("o", "score"),
                       d.get("m", 0.0))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise bad from None
        if not (isinstance(c.q, str) and isinstance(c.level, str) and isinstance(c.limit, int)
                and isinstance(c.position, int) and c.position >= 0
                and isinstance(c.snapshot, str) and (c.version is None
                                                     or isinstance(c.version, str))
                and isinstance(c.sort, str)
                and isinstance(c.min_score, (int, float)) and not isinstance(c.min_score, bool)):
            raise bad
        return c


@dataclass
class Snapshot:
    sid: str
    q: str
    level: str
    version: str | None
    hits: list[Hit]
    total: int
    query: dict[str, Any]
    created: float
    sort: str = "score"
    min_score: float = 0.0

    def key(self) -> tuple:
        return (self.q, self.level, self.sort, self.min_score)


class SnapshotCache:
    """The first pages' ranked hits: at most ``entries`` snapshots and ``max_hits`` hits in
    all, each kept ``ttl_s`` seconds; least recently used first out. Thread-safe."""

    def __init__(self, entries: int = SNAPSHOT_ENTRIES, ttl_s: float = SNAPSHOT_TTL_S,
                 max_hits: int = SNAPSHOT_MAX_HITS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.entries, self.ttl_s, self.max_hits, self.clock = entries, ttl_s, max_hits, clock
        self._by_id: OrderedDict[str, Snapshot] = OrderedDict()
        self._hits = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_id)

    def _drop(self, sid: str) -> None:
        self._hits -= len(self._by_id.pop(sid).hits)

    def _expire(self) -> None:
        now = self.clock()
        for sid in [s for s, snap in self._by_id.items() if now - snap.created > self.ttl_s]:
            self._drop(sid)

    def get(self, sid: str) -> Snapshot | None:
        with self._lock:
            self._expire()
            snap = self._by_id.get(sid)
            if snap is not None:
                self._by_id.move_to_end(sid)
            return snap

    def find(self, q: str, level: str, version: str | None, sort: str = "score",
             min_score: float = 0.0) -> Snapshot | None:
        """A fresh snapshot of the same query, order and floor at the same write version
        (None: can't tell)."""
        if version is None:
            return None
        with self._lock:
            self._expire()
            for snap in reversed(self._by_id.values()):
                if (snap.key(), snap.version) == ((q, level, sort, min_score), version):
                    self._by_id.move_to_end(snap.sid)
                    return snap
        return None

    def put(self, snap: Snapshot) -> None:
        with self._lock:
            self._expire()
            self._by_id[snap.sid] = snap
            self._hits += len(snap.hits)
            while self._by_id and (len(self._by_id) > self.entries
                                   or self._hits > self.max_hits):
                self._drop(next(iter(self._by_id)))


class CursorPager:
    """Search pages with cursors. ``snapshots=None`` (the CLI: one page per process) keeps no
    snapshot: later pages are recomputed while the write version is unchanged, and a store
    that has no write version issues no cursor."""

    def __init__(self, codec: CursorCodec | None = None,
                 snapshots: SnapshotCache | None = None,
                 max_hits: int = MAX_CURSOR_HITS) -> None:
        self.codec = codec or CursorCodec()
        self.snapshots = snapshots
        self.max_hits = max_hits

    def _next(self, q: str, level: str, limit: int, end: int, reach: int,
              version: str | None, sid: str, sort: str = "score",
              min_score: float = 0.0) -> str | None:
        if end >= reach:
            return None
        return self.codec.encode(Cursor(q, level, limit, end, version, sid, sort, min_score))

    def first_page(self, store: CatalogueReader, q: str, level: str, limit: int, *,
                   sort: str = "score", min_score: float = 0.0) -> SearchPage:
        before = _version_token(store.catalogue_version())
        if self.snapshots is not None:
            snap = self.snapshots.find(q, level, before, sort, min_score)
            if snap is not None:
                return self._cut(snap, 0, limit, store)
        page = run_search(store, q, level, limit, 0, sort=sort, min_score=min_score)
        after = _version_token(store.catalogue_version())
        version = before if before == after else None
        reach = min(page.total, self.max_hits)
        if reach <= limit:
            return page
        if self.snapshots is None:
            if version is None:
                return page
            return replace(page, next_cursor=self._next(q, level, limit, limit, reach, version,
                                                        "", sort, min_score))
        snap = self._take(store, q, level, reach, sort, min_score)
        self.snapshots.put(snap)
        return self._cut(snap, 0, limit, store)

    def _take(self, store: CatalogueReader, q: str, level: str, reach: int,
              sort: str = "score", min_score: float = 0.0) -> Snapshot:
        """The ranked hits, read while the write version holds still when it can."""
        resolved = resolve(store, q)
        field, descending = check_options(min_score, sort)
        for _ in range(_VERSION_TRIES):
            before = _version_token(store.catalogue_version())
            full = search_resolved(store, resolved, level, reach, 0,  # type: ignore[arg-type]
                                   min_score=min_score, sort=field, descending=descending,
                                   with_best_shots=False)
            after = _version_token(store.catalogue_version())
            if before == after:
                break
        version = before if before == after else None
        return Snapshot(secrets.token_urlsafe(12), q, level, version, list(full.hits),
                        full.total, full.query, time.monotonic(), sort, min_score)

    def _cut(self, snap: Snapshot, position: int, limit: int,
             store: CatalogueReader | None = None) -> SearchPage:
        """The page at ``position`` of a snapshot; with ``store``, its episode/programme hits
        get their best shots (a snapshot keeps hits without them: one search each)."""
        end = position + limit
        page = SearchPage(snap.hits[position:end], snap.total, position, limit,
                          snap.level, snap.query)  # type: ignore[arg-type]
        if store is not None and snap.level != "shot":
            best_shots(store, resolve(store, snap.q), page)  # type: ignore[arg-type]
        page.next_cursor = self._next(snap.q, snap.level, limit, end,
                                      min(len(snap.hits), self.max_hits), snap.version,
                                      snap.sid, snap.sort, snap.min_score)
        return page

    def decode(self, token: str, q: str | None = None, level: str | None = None,
               limit: int | None = None, sort: str | None = None,
               min_score: float | None = None) -> Cursor:
        """The cursor, checked against the request's query, level, page size, sort and score
        floor (None: not given, the cursor's own is used)."""
        c = self.codec.decode(token)
        for name, given, own in (("q", q, c.q), ("level", level, c.level),
                                 ("limit", limit, c.limit), ("sort", sort, c.sort),
                                 ("min_score", min_score, c.min_score)):
            if given is not None and given != own:
                raise CursorInvalid(f"the cursor belongs to another {name} ({own!r}); "
                                    f"leave {name} out or start again without a cursor")
        return c

    def page(self, store: CatalogueReader, c: Cursor) -> SearchPage:
        """The page a (decoded) cursor points at."""
        snap = self.snapshots.get(c.snapshot) if self.snapshots and c.snapshot else None
        if snap is not None and snap.key() == (c.q, c.level, c.sort, c.min_score):
            return self._cut(snap, c.position, c.limit, store)
        current = _version_token(store.catalogue_version())
        if c.version is None or current != c.version:
            raise CursorExpired(EXPIRED)
        page = run_search(store, c.q, c.level, c.limit, c.position, sort=c.sort,
                          min_score=c.min_score)
        if _version_token(store.catalogue_version()) != c.version:
            raise CursorExpired(EXPIRED)
        reach = min(page.total, self.max_hits)
        page.next_cursor = self._next(c.q, c.level, c.limit, c.position + c.limit, reach,
                                      c.version, c.snapshot, c.sort, c.min_score)
        return page
