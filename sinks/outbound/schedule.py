"""When to try a delivery again, what an attempt's answer means, and when an endpoint is switched off.

- Schedule: the delay before each attempt, Svix's by default (immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
  10 h, 10 h: 8 attempts over about 27.6 h), overridable by ``TRACKPIPE_OUTBOUND__RETRY_SCHEDULE_S``
  (comma-separated seconds). Each delay but an immediate one is spread by a bounded jitter (default
  ±20 %) drawn from an injected source, so tests are deterministic and many deliveries failing together
  do not come back together.
- Outcome: a 2xx within the timeout is success; 3xx is a failure (redirects are never followed);
  ``410 Gone`` disables the endpoint; anything else, a timeout or a connection error is a failure.
- Delivery: pending -> delivered | failed -> ... -> dead (schedule exhausted, endpoint gone or disabled);
  a manual retry brings a failed or dead delivery back to pending with a fresh schedule.
- Endpoint circuit: 10 consecutive failures within 72 h (Everflow's rule) disable it until re-enabled.

Pure: the caller passes ``now`` and the random source.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

DEFAULT_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
DEFAULT_JITTER = 0.2  # each delay is spread over [d·(1-j), d·(1+j)]
MAX_JITTER = 0.5
MAX_SCHEDULE_STEPS = 50
MAX_DELAY_S = 7 * 86400.0
MAX_RETRY_AFTER_S = 3600.0  # a receiver's Retry-After is honoured up to one hour
DEFAULT_TIMEOUT_S = 10.0

#: ``rng()`` returns a float in [0, 1) (``random.Random(seed).random`` in tests).
Rng = Callable[[], float]


class ScheduleError(ValueError):
    """A schedule setting that cannot be used (named at start-up). Never retriable."""

    retriable = False


def parse_schedule(text: str | None) -> tuple[float, ...]:
    """``"0,5,300"`` -> (0.0, 5.0, 300.0). Unset or blank -> the default. Each entry is the delay in
    seconds before that attempt (the first is counted from the conversion being recorded)."""
    if text is None or not text.strip():
        return DEFAULT_SCHEDULE_S
    steps: list[float] = []
    for n, item in enumerate(text.split(","), start=1):
        raw = item.strip()
        try:
            value = float(raw)
        except ValueError:
            raise ScheduleError(f"retry schedule entry {n} ({raw!r}) is not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or value > MAX_DELAY_S:
            raise ScheduleError(f"retry schedule entry {n} ({raw!r}) is not 0..{MAX_DELAY_S:.0f} seconds")
        steps.append(value)
    if len(steps) > MAX_SCHEDULE_STEPS:
        raise ScheduleError(f"a retry schedule has at most {MAX_SCHEDULE_STEPS} entries")
    return tuple(steps)


def jittered(delay_s: float, rng: Rng, jitter: float = DEFAULT_JITTER) -> float:
    """``delay_s`` spread uniformly over ±``jitter`` of itself; 0 stays 0 (an immediate attempt)."""
    if not 0 <= jitter <= MAX_JITTER:
        raise ValueError(f"jitter is a fraction in 0..{MAX_JITTER}")
    u = rng()
    if not 0 <= u < 1:
        raise ValueError("the random source returns values in [0, 1)")
    return delay_s * (1 + jitter * (2 * u - 1))


# --- attempt outcomes ---------------------------------------------------------------------------------


class TransportError(StrEnum):
    """Why an attempt got no HTTP answer (set by the I/O side)."""

    TIMEOUT = "timeout"
    CONNECT = "connect"  # refused, unreachable, reset before an answer
    TLS = "tls"
    DNS = "dns"  # the name did not resolve
    DESTINATION_REFUSED = "destination_refused"  # the SSRF guard refused the resolved addresses
    PROTOCOL = "protocol"  # an unreadable answer


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"  # counts toward the schedule and the endpoint circuit
    GONE = "gone"  # 410: the receiver wants nothing more; the endpoint is disabled


class FailureReason(StrEnum):
    REDIRECT = "redirect"  # 3xx, never followed
    CLIENT_ERROR = "client_error"  # 4xx other than 410 / 429
    THROTTLED = "throttled"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    BAD_STATUS = "bad_status"  # 1xx or out of range
    SLOW = "slow"  # an answer, but after the timeout
    TIMEOUT = "timeout"
    CONNECT = "connect"
    TLS = "tls"
    DNS = "dns"
    DESTINATION_REFUSED = "destination_refused"
    PROTOCOL = "protocol"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Classified:
    outcome: Outcome
    reason: FailureReason | None  # None for success
    retry_after_s: float | None = None  # the receiver's Retry-After (seconds, capped), if any

    @property
    def retriable(self) -> bool:
        return self.outcome is Outcome.FAILURE


def classify(
    status: int | None,
    elapsed_s: float,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    error: TransportError | None = None,
    retry_after_s: float | None = None,
) -> Classified:
    """What one attempt's result means. ``status`` is None when there was no answer (``error`` says
    why). ``retry_after_s`` is the parsed Retry-After header, honoured on 429 and 5xx only."""
    if status is None:
        return Classified(Outcome.FAILURE, FailureReason(error.value if error else "protocol"))
    if 200 <= status <= 299:
        if elapsed_s > timeout_s:
            return Classified(Outcome.FAILURE, FailureReason.SLOW)
        return Classified(Outcome.SUCCESS, None)
    if status == 410:
        return Classified(Outcome.GONE, FailureReason.GONE)
    after = None
    if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s > 0:
        after = min(retry_after_s, MAX_RETRY_AFTER_S)
    if 300 <= status <= 399:
        return Classified(Outcome.FAILURE, FailureReason.REDIRECT)
    if status == 429:
        return Classified(Outcome.FAILURE, FailureReason.THROTTLED, after)
    if 400 <= status <= 499:
        return Classified(Outcome.FAILURE, FailureReason.CLIENT_ERROR)
    if 500 <= status <= 599:
        return Classified(Outcome.FAILURE, FailureReason.SERVER_ERROR, after)
    return Classified(Outcome.FAILURE, FailureReason.BAD_STATUS)


# --- the delivery state machine -----------------------------------------------------------------------


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # not attempted yet (or brought back by a manual retry)
    DELIVERED = "delivered"
    FAILED = "failed"  # failed at least once, another attempt is scheduled
    DEAD = "dead"  # no more attempts unless retried by hand


class DeadReason(StrEnum):
    EXHAUSTED = "exhausted"  # every step of the schedule failed
    GONE = "gone"  # the receiver answered 410
    ENDPOINT_DISABLED = "endpoint_disabled"  # the endpoint was disabled while this was due


class TransitionError(Exception):
    """A transition the state machine does not allow (a caller bug). Never retriable."""

    retriable = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one delivery stands. ``step`` indexes the schedule of the current round (a manual retry
    starts a new round); ``attempts`` counts every attempt ever made."""

    status: DeliveryStatus
    due_at: datetime | None  # the next attempt; None when delivered or dead
    step: int = 0
    attempts: int = 0
    last_reason: FailureReason | None = None
    dead_reason: DeadReason | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    steps_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if not self.steps_s:
            raise ScheduleError("a retry schedule has at least one entry")
        if not 0 <= self.jitter <= MAX_JITTER:
            raise ScheduleError(f"jitter is a fraction in 0..{MAX_JITTER}")

    @classmethod
    def from_setting(cls, text: str | None, jitter: float = DEFAULT_JITTER) -> Schedule:
        return cls(parse_schedule(text), jitter)

    @property
    def max_attempts(self) -> int:
        return len(self.steps_s)

    def delay(self, step: int, rng: Rng) -> timedelta:
        return timedelta(seconds=jittered(self.steps_s[step], rng, self.jitter))

    def start(self, now: datetime, rng: Rng) -> Delivery:
        """A new delivery, due after the schedule's first delay (0 = now)."""
        return Delivery(DeliveryStatus.PENDING, now + self.delay(0, rng))

    def after_attempt(self, d: Delivery, result: Classified, now: datetime, rng: Rng) -> Delivery:
        """The delivery after an attempt made at ``now`` with ``result``."""
        if d.status not in (DeliveryStatus.PENDING, DeliveryStatus.FAILED):
            raise TransitionError(f"a {d.status.value} delivery is not attempted")
        attempts = d.attempts + 1
        if result.outcome is Outcome.SUCCESS:
            return Delivery(DeliveryStatus.DELIVERED, None, d.step + 1, attempts)
        if result.outcome is Outcome.GONE:
            return Delivery(
                DeliveryStatus.DEAD, None, d.step + 1, attempts, FailureReason.GONE, DeadReason.GONE
            )
        step = d.step + 1
        if step >= self.max_attempts:
            return Delivery(DeliveryStatus.DEAD, None, step, attempts, result.reason, DeadReason.EXHAUSTED)
        delay = self.delay(step, rng)
        if result.retry_after_s is not None:
            delay = max(delay, timedelta(seconds=result.retry_after_s))
        return Delivery(DeliveryStatus.FAILED, now + delay, step, attempts, result.reason)

    def endpoint_disabled(self, d: Delivery) -> Delivery:
        """A due delivery whose endpoint is disabled: dead, kept for a manual (bulk) retry."""
        if d.status in (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD):
            return d
        return replace(d, status=DeliveryStatus.DEAD, due_at=None, dead_reason=DeadReason.ENDPOINT_DISABLED)

    def retry(self, d: Delivery, now: datetime) -> Delivery:
        """A manual retry: a failed or dead delivery is due now, with a fresh schedule round."""
        if d.status is DeliveryStatus.DELIVERED:
            raise TransitionError("a delivered delivery is not retried")
        return Delivery(DeliveryStatus.PENDING, now, 0, d.attempts, d.last_reason, None)


# --- the endpoint circuit -----------------------------------------------------------------------------

DEFAULT_FAILURE_THRESHOLD = 10
DEFAULT_FAILURE_WINDOW = timedelta(hours=72)


class DisableReason(StrEnum):
    FAILING = "failing"  # the threshold of consecutive failures within the window
    GONE = "gone"  # the receiver answered 410
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One destination's health. ``failures`` holds the times of the current streak's last failures
    (at most the threshold), so the state stays small and serializable."""

    failures: tuple[datetime, ...] = ()
    disabled_at: datetime | None = None
    disabled_reason: DisableReason | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class Circuit:
    threshold: int = DEFAULT_FAILURE_THRESHOLD
    window: timedelta = DEFAULT_FAILURE_WINDOW

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.window <= timedelta(0):
            raise ValueError("a circuit needs a threshold >= 1 and a positive window")

    def record(self, e: Endpoint, result: Classified, now: datetime) -> Endpoint:
        """The endpoint after an attempt's result. A disabled endpoint stays disabled (attempts that
        were in flight when it was disabled change nothing)."""
        if not e.enabled:
            return e
        if result.outcome is Outcome.SUCCESS:
            return Endpoint()
        if result.outcome is Outcome.GONE:
            return Endpoint(e.failures, now, DisableReason.GONE)
        streak = (*e.failures, now)[-self.threshold :]
        if len(streak) >= self.threshold and now - streak[0] <= self.window:
            return Endpoint(streak, now, DisableReason.FAILING)
        return Endpoint(streak)

    @staticmethod
    def disable(e: Endpoint, now: datetime) -> Endpoint:
        return e if not e.enabled else Endpoint(e.failures, now, DisableReason.MANUAL)

    @staticmethod
    def reenable(e: Endpoint) -> Endpoint:
        """Re-enabled by hand: a clean slate (the old streak no longer counts)."""
        return Endpoint()


def due(deliveries: Sequence[Delivery], now: datetime) -> list[int]:
    """Indices of the deliveries due at ``now``, oldest due first (a helper for the engine's queue)."""
    ready = [(d.due_at, i) for i, d in enumerate(deliveries) if d.due_at is not None and d.due_at <= now]
    return [i for _, i in sorted(ready)]
