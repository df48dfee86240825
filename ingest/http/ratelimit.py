"""Per-key rate limit (token bucket), in memory: each edge instance limits what it receives.

A bucket holds up to ``per_minute`` requests and refills at ``per_minute / 60`` per second, so a client
may burst up to the limit and then sustain the limit. Behind a load balancer with N edges a client can
get up to N times the limit (documented; the limit protects each instance, it is not a billing quota).
The number of buckets is bounded: the least recently used ones are forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from ingest.errors import Rejected


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ):
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def check(self, key: str) -> float | None:
        """Take one request for ``key``. None if allowed, else seconds until the next one is."""
        if self.per_minute <= 0:
            return None
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return None
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        return (1.0 - tokens) / self._rate

    def waiting(self, key: str) -> float | None:
        """Like :meth:`check` without taking anything: None if a request for ``key`` would be allowed, else
        seconds until it would be."""
        if self.per_minute <= 0 or key not in self._buckets:
            return None
        tokens, at = self._buckets[key]
        tokens = min(float(self.per_minute), tokens + (self._clock() - at) * self._rate)
        return None if tokens >= 1.0 else (1.0 - tokens) / self._rate

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))


def enforce(limiter: RateLimiter, key: str, what: str) -> None:
    """Raise a 429 rejection (with Retry-After) when ``key`` is over its limit."""
    wait = limiter.check(key)
    if wait is not None:
        raise Rejected(
            429,
            "rate_limited",
            f"more than {limiter.per_minute} requests per minute for this {what}; retry later",
            headers={"Retry-After": RateLimiter.retry_after_header(wait)},
        )
