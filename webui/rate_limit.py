"""A per-client rate limit: one token bucket per client address, in memory, thread-safe.

Each address's bucket holds at most ``burst`` tokens and refills at ``per_minute / 60`` a
second; a request takes one token, and without one it is a 429 with ``Retry-After`` (whole
seconds until a token is back). The address is the TCP peer's (waitress drops untrusted proxy
headers): behind a reverse proxy every client shares the proxy's bucket, so limit there
instead (``server.rate_limit_per_minute: 0``). Buckets that have refilled are forgotten, and at
most ``MAX_CLIENTS`` are kept (the least recently seen go first), so many addresses cannot
grow the server's memory.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

MAX_CLIENTS = 100_000


class RateLimited(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s)
        self.retry_after_s = retry_after_s


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.rate = per_minute / 60.0  # tokens a second
        self.burst = float(burst or per_minute)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, client: str, now: float | None = None) -> None:
        """Take a token for ``client``, or raise :class:`RateLimited`."""
        if not self.enabled:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, then = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                raise RateLimited(max(1, math.ceil((1.0 - tokens) / self.rate)))
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_clients:
                self._forget(now)

    def _forget(self, now: float) -> None:
        full = [c for c, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self.rate >= self.burst]
        for client in full:
            del self._buckets[client]
        keep = int(self.max_clients * 0.9)  # room for new clients before the next scan
        while len(self._buckets) > keep:
            self._buckets.popitem(last=False)
