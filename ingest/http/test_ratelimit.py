import pytest

from ingest.errors import Rejected
from ingest.http.ratelimit import RateLimiter, enforce


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_per_key():
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)  # one per second after a burst of 60
    assert all(limiter.check("a") is None for _ in range(60))
    wait = limiter.check("a")
    assert wait is not None and 0.9 < wait <= 1.0
    assert limiter.check("b") is None  # other keys have their own bucket
    clock.now += 1.0
    assert limiter.check("a") is None and limiter.check("a") is not None


def test_disabled_and_bounded():
    assert all(RateLimiter(0).check("k") is None for _ in range(10))
    limiter = RateLimiter(5, max_keys=3)
    for key in "abcdef":
        limiter.check(key)
    assert len(limiter._buckets) == 3


def test_enforce_answers_429_with_retry_after():
    limiter = RateLimiter(1, clock=Clock())
    enforce(limiter, "t", "token")
    with pytest.raises(Rejected) as info:
        enforce(limiter, "t", "token")
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "60"


def test_waiting_looks_without_taking():
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)  # a burst of 3, then one every 20 s
    assert limiter.waiting("ip") is None  # never seen
    for _ in range(3):
        assert limiter.waiting("ip") is None
        limiter.check("ip")
    wait = limiter.waiting("ip")
    assert wait is not None and 19.9 < wait <= 20.0
    assert limiter.waiting("ip") == wait  # looking took nothing
    clock.now += 20
    assert limiter.waiting("ip") is None and limiter.check("ip") is None
