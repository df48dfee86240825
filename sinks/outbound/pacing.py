"""Pacing of outbound attempts per destination: a token bucket (pure: the clock is passed in)."""

from __future__ import annotations

import math
from collections.abc import Callable


class PacingError(ValueError):
    """A rate limit that cannot be (settings); never retriable."""

    retriable = False


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` stored. Pure: ``clock`` is passed in."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]):
        if not (math.isfinite(rate) and rate > 0) or burst < 1:
            raise PacingError("a rate limit is a positive rate with a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def take(self) -> float:
        """Take a token; return how long to wait before using it (0 when one was in the bucket). A
        token taken ahead is owed (the bucket goes negative), so waiters are served in order."""
        self._refill()
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    @property
    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.burst
