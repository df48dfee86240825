import itertools
from datetime import UTC, datetime, timedelta
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinks.outbound.schedule import (
    DEFAULT_SCHEDULE_S,
    Circuit,
    Classified,
    DeadReason,
    Delivery,
    DeliveryStatus,
    DisableReason,
    Endpoint,
    FailureReason,
    Outcome,
    Schedule,
    ScheduleError,
    TransitionError,
    TransportError,
    classify,
    due,
    jittered,
    parse_schedule,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAIL = classify(500, 0.1)
OK = classify(200, 0.1)


def fixed(u: float):
    return lambda: u


def test_default_schedule_is_svix_like() -> None:
    assert DEFAULT_SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert parse_schedule(None) == parse_schedule("  ") == DEFAULT_SCHEDULE_S
    assert sum(DEFAULT_SCHEDULE_S) / 3600 == pytest.approx(27.6, abs=0.05)


def test_schedule_setting_is_comma_separated_seconds() -> None:
    assert parse_schedule("0, 0.5,1 ,2") == (0.0, 0.5, 1.0, 2.0)


@pytest.mark.parametrize(
    ("text", "named"),
    [("1,x,3", "entry 2"), ("1,,3", "entry 2"), ("-1", "entry 1"), ("nan", "entry 1"), ("inf", "entry 1")],
)
def test_bad_schedule_settings_name_the_entry(text: str, named: str) -> None:
    with pytest.raises(ScheduleError, match=named) as info:
        parse_schedule(text)
    assert info.value.retriable is False
    with pytest.raises(ScheduleError):
        parse_schedule(",".join(["1"] * 51))


@given(delay=st.floats(0, 86400), u=st.floats(0, 1, exclude_max=True), j=st.floats(0, 0.5))
def test_jitter_is_bounded(delay: float, u: float, j: float) -> None:
    got = jittered(delay, fixed(u), j)
    assert delay * (1 - j) - 1e-9 <= got <= delay * (1 + j) + 1e-9


def test_jitter_is_deterministic_under_a_seeded_source_and_zero_stays_zero() -> None:
    a = [jittered(300, Random(7).random) for _ in range(3)]
    assert a == [jittered(300, Random(7).random) for _ in range(3)]
    assert jittered(0, fixed(0.99)) == 0
    with pytest.raises(ValueError):
        jittered(1, fixed(1.0))
    with pytest.raises(ValueError):
        jittered(1, fixed(0.5), 0.9)


@pytest.mark.parametrize(
    ("status", "elapsed", "outcome", "reason"),
    [
        (200, 1.0, Outcome.SUCCESS, None),
        (204, 9.99, Outcome.SUCCESS, None),
        (299, 0, Outcome.SUCCESS, None),
        (200, 10.5, Outcome.FAILURE, FailureReason.SLOW),
        (301, 0, Outcome.FAILURE, FailureReason.REDIRECT),
        (302, 0, Outcome.FAILURE, FailureReason.REDIRECT),
        (307, 0, Outcome.FAILURE, FailureReason.REDIRECT),
        (400, 0, Outcome.FAILURE, FailureReason.CLIENT_ERROR),
        (404, 0, Outcome.FAILURE, FailureReason.CLIENT_ERROR),
        (410, 0, Outcome.GONE, FailureReason.GONE),
        (429, 0, Outcome.FAILURE, FailureReason.THROTTLED),
        (500, 0, Outcome.FAILURE, FailureReason.SERVER_ERROR),
        (503, 0, Outcome.FAILURE, FailureReason.SERVER_ERROR),
        (100, 0, Outcome.FAILURE, FailureReason.BAD_STATUS),
        (600, 0, Outcome.FAILURE, FailureReason.BAD_STATUS),
    ],
)
def test_classification_of_answers(status: int, elapsed: float, outcome: Outcome, reason: object) -> None:
    got = classify(status, elapsed, timeout_s=10)
    assert (got.outcome, got.reason) == (outcome, reason)
    assert got.retriable is (outcome is Outcome.FAILURE)


@pytest.mark.parametrize("error", list(TransportError))
def test_no_answer_is_a_retriable_failure_named_by_its_cause(error: TransportError) -> None:
    got = classify(None, 10.0, error=error)
    assert got.outcome is Outcome.FAILURE and got.reason == FailureReason(error.value) and got.retriable


def test_retry_after_is_kept_for_429_and_5xx_only_and_capped() -> None:
    assert classify(429, 0, retry_after_s=30).retry_after_s == 30
    assert classify(503, 0, retry_after_s=10**9).retry_after_s == 3600
    assert classify(404, 0, retry_after_s=30).retry_after_s is None
    assert classify(503, 0, retry_after_s=float("nan")).retry_after_s is None


def run_to_end(schedule: Schedule, results: list[Classified], u: float = 0.5) -> list[Delivery]:
    now = T0
    d = schedule.start(now, fixed(u))
    seen = [d]
    for r in results:
        assert d.due_at is not None
        now = d.due_at
        d = schedule.after_attempt(d, r, now, fixed(u))
        seen.append(d)
    return seen


def test_a_delivery_that_always_fails_follows_the_schedule_then_dies() -> None:
    s = Schedule()
    states = run_to_end(s, [FAIL] * 8)
    assert states[0].status is DeliveryStatus.PENDING and states[0].due_at == T0
    dues = [st.due_at for st in states[:-1] if st.due_at is not None]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(dues)]
    assert gaps == [5, 300, 1800, 7200, 18000, 36000, 36000]  # u=0.5: no jitter
    assert all(st.status is DeliveryStatus.FAILED for st in states[1:-1])
    last = states[-1]
    assert last.status is DeliveryStatus.DEAD and last.dead_reason is DeadReason.EXHAUSTED
    assert last.attempts == 8 and last.due_at is None and last.last_reason is FailureReason.SERVER_ERROR
    with pytest.raises(TransitionError):
        s.after_attempt(last, OK, T0, fixed(0.5))


def test_success_after_failures_delivers_and_410_kills() -> None:
    s = Schedule.from_setting("0,1,2")
    states = run_to_end(s, [FAIL, OK])
    assert states[-1].status is DeliveryStatus.DELIVERED and states[-1].attempts == 2
    gone = run_to_end(s, [FAIL, classify(410, 0)])[-1]
    assert gone.status is DeliveryStatus.DEAD and gone.dead_reason is DeadReason.GONE
    with pytest.raises(TransitionError):
        s.retry(states[-1], T0)


def test_jitter_moves_the_due_time_within_bounds() -> None:
    s = Schedule.from_setting("0,100", jitter=0.2)
    early = run_to_end(s, [FAIL], u=0.0)[-1]
    late = run_to_end(s, [FAIL], u=0.999999)[-1]
    assert early.due_at == T0 + timedelta(seconds=80)
    assert late.due_at is not None and T0 + timedelta(seconds=119.99) < late.due_at <= T0 + timedelta(
        seconds=120
    )


def test_retry_after_postpones_but_never_advances() -> None:
    s = Schedule.from_setting("0,5,300")
    d = s.after_attempt(s.start(T0, fixed(0.5)), classify(429, 0, retry_after_s=60), T0, fixed(0.5))
    assert d.due_at == T0 + timedelta(seconds=60)
    d = s.after_attempt(d, classify(503, 0, retry_after_s=1), T0, fixed(0.5))
    assert d.due_at == T0 + timedelta(seconds=300)


def test_manual_retry_restarts_the_schedule_and_keeps_the_attempt_count() -> None:
    s = Schedule.from_setting("0,1")
    dead = run_to_end(s, [FAIL, FAIL])[-1]
    again = s.retry(dead, T0 + timedelta(days=3))
    assert again == Delivery(DeliveryStatus.PENDING, T0 + timedelta(days=3), 0, 2, FailureReason.SERVER_ERROR)
    assert s.after_attempt(again, OK, T0, fixed(0.5)).status is DeliveryStatus.DELIVERED


def test_deliveries_of_a_disabled_endpoint_die_and_can_be_retried_later() -> None:
    s = Schedule()
    d = s.endpoint_disabled(s.start(T0, fixed(0.5)))
    assert d.status is DeliveryStatus.DEAD and d.dead_reason is DeadReason.ENDPOINT_DISABLED
    delivered = run_to_end(s, [OK])[-1]
    assert s.endpoint_disabled(delivered) is delivered
    assert s.retry(d, T0).status is DeliveryStatus.PENDING


def test_schedule_needs_a_step_and_sane_jitter() -> None:
    with pytest.raises(ScheduleError):
        Schedule(())
    with pytest.raises(ScheduleError):
        Schedule((1.0,), jitter=0.7)


def test_ten_consecutive_failures_within_72h_disable_the_endpoint() -> None:
    c = Circuit()
    e = Endpoint()
    for i in range(9):
        e = c.record(e, FAIL, T0 + timedelta(hours=i))
    assert e.enabled and len(e.failures) == 9
    e = c.record(e, FAIL, T0 + timedelta(hours=71))
    assert not e.enabled and e.disabled_reason is DisableReason.FAILING
    assert c.record(e, OK, T0 + timedelta(hours=72)) == e  # stays disabled
    assert c.reenable(e) == Endpoint()


def test_a_success_resets_the_streak_and_spread_out_failures_do_not_disable() -> None:
    c = Circuit()
    e = Endpoint()
    for i in range(9):
        e = c.record(e, FAIL, T0 + timedelta(hours=i))
    e = c.record(e, OK, T0 + timedelta(hours=10))
    assert e == Endpoint()
    slow = Endpoint()
    for i in range(30):  # one failure every 9 h: 10 of them span 81 h > 72 h
        slow = c.record(slow, FAIL, T0 + timedelta(hours=9 * i))
    assert slow.enabled and len(slow.failures) == 10


def test_gone_disables_at_once_and_manual_disable() -> None:
    c = Circuit()
    e = c.record(Endpoint(), classify(410, 0), T0)
    assert not e.enabled and e.disabled_reason is DisableReason.GONE
    m = c.disable(Endpoint(), T0)
    assert m.disabled_reason is DisableReason.MANUAL and c.disable(m, T0 + timedelta(1)) is m
    with pytest.raises(ValueError):
        Circuit(threshold=0)


@given(st.lists(st.sampled_from(["ok", "fail"]), max_size=40))
def test_circuit_state_stays_small(outcomes: list[str]) -> None:
    c = Circuit()
    e = Endpoint()
    for i, o in enumerate(outcomes):
        e = c.record(e, OK if o == "ok" else FAIL, T0 + timedelta(minutes=i))
        assert len(e.failures) <= c.threshold
    streak = 0
    for o in outcomes:
        streak = 0 if o == "ok" else streak + 1
        if streak >= 10:
            break
    assert e.enabled is (streak < 10)


def test_due_lists_oldest_first() -> None:
    s = Schedule()
    a = Delivery(DeliveryStatus.FAILED, T0 + timedelta(seconds=5))
    b = Delivery(DeliveryStatus.PENDING, T0)
    c = Delivery(DeliveryStatus.FAILED, T0 + timedelta(hours=1))
    dead = s.endpoint_disabled(b)
    assert due([a, b, c, dead], T0 + timedelta(seconds=10)) == [1, 0]
