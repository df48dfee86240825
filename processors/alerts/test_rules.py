from datetime import UTC, datetime

import pytest

from processors.alerts.rules import (
    SPIKE_BASELINE_MS,
    WEEK_MS,
    Verdict,
    correction_ms,
    evaluate,
    keys_of,
    lookback_ms,
)
from processors.alerts.window import MINUTE_MS, PROJECT, WindowStore
from schemas.alerts import AlertRule

T0 = 1_767_571_200_000 + WEEK_MS  # a Monday 00:00 UTC, one week after the baseline week's start
NOW = datetime(2026, 1, 5, tzinfo=UTC)


def rule(**kw: object) -> AlertRule:
    base: dict[str, object] = {
        "id": "r",
        "project": "p",
        "name": "n",
        "kind": "threshold",
        "op": "above",
        "value": 2,
        "window_s": 120,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return AlertRule.model_validate(base | kw)


def store_for(r: AlertRule, since_ms: int = T0 - 2 * WEEK_MS) -> WindowStore:
    s = WindowStore()
    s.keep_keys(keys_of(r), since_ms)
    return s


def test_threshold_on_conversions_revenue_and_rate() -> None:
    r = rule(scope={"goal_id": "g"})
    s = store_for(r)
    assert evaluate(r, s, T0).verdict is Verdict.NO_DATA  # the project had no data
    s.add(PROJECT, T0 - MINUTE_MS, traffic=4)
    assert evaluate(r, s, T0) == evaluate(r, s, T0).__class__(Verdict.FALSE, 0.0, 2.0)
    s.add(("g", None, None), T0 - 2 * MINUTE_MS, conversions=3, revenue=125_000)
    s.add(PROJECT, T0 - 2 * MINUTE_MS, conversions=3, revenue=125_000)
    assert evaluate(r, s, T0).verdict is Verdict.TRUE
    assert evaluate(r, s, T0 + MINUTE_MS).verdict is Verdict.FALSE  # minute -2 left the window
    rev = rule(scope={"goal_id": "g"}, metric="revenue", op="below", value=20)
    assert (evaluate(rev, s, T0).verdict, evaluate(rev, s, T0).value) == (Verdict.TRUE, 12.5)
    rate = rule(scope={"goal_id": "g"}, metric="conversion_rate", value=0.5)
    ev = evaluate(rate, s, T0)
    assert (ev.verdict, ev.value) == (Verdict.TRUE, 0.75)  # 3 conversions / 4 traffic events
    assert evaluate(rate, s, T0 + 2 * MINUTE_MS).verdict is Verdict.NO_DATA  # no traffic


def test_whole_seconds_and_second_granular_windows() -> None:
    with pytest.raises(ValueError, match="whole second"):
        evaluate(rule(), WindowStore(), T0 + 1)
    r = rule(window_s=10, value=1)
    s = store_for(r)
    s.add(PROJECT, T0 + 3_400, conversions=2)  # in second 3
    assert evaluate(r, s, T0 + 3_000).verdict is Verdict.NO_DATA  # [-7 s, 3 s): not yet
    assert evaluate(r, s, T0 + 4_000).value == 2.0  # [-6 s, 4 s)
    assert evaluate(r, s, T0 + 13_000).value == 2.0  # [3 s, 13 s)
    assert evaluate(r, s, T0 + 14_000).verdict is Verdict.NO_DATA  # [4 s, 14 s): left the window


def test_change_against_the_same_window_a_week_earlier() -> None:
    pct = rule(kind="change", change_mode="percent", op="below", value=-30)
    absolute = rule(kind="change", change_mode="absolute", op="above", value=5)
    s = store_for(pct)
    s.add(PROJECT, T0 - MINUTE_MS, conversions=6)
    assert evaluate(pct, s, T0).verdict is Verdict.NO_DATA  # no baseline a week ago
    s.add(PROJECT, T0 - WEEK_MS - MINUTE_MS, conversions=10)
    ev = evaluate(pct, s, T0)
    assert (ev.verdict, ev.value, ev.threshold) == (Verdict.TRUE, -40.0, -30.0)
    assert evaluate(absolute, s, T0).value == -4.0
    s.add(PROJECT, T0 - 2 * MINUTE_MS, conversions=10)
    assert (evaluate(absolute, s, T0).verdict, evaluate(absolute, s, T0).value) == (Verdict.TRUE, 6.0)
    zero = store_for(pct)
    zero.add(PROJECT, T0 - MINUTE_MS, conversions=1)
    zero.add(PROJECT, T0 - WEEK_MS - MINUTE_MS, traffic=1)  # data then, but 0 conversions
    assert evaluate(pct, zero, T0).verdict is Verdict.NO_DATA  # percent of 0
    assert evaluate(absolute, zero, T0).value == 1.0


def test_the_week_ago_window_is_whole_minutes() -> None:
    """At t = T0 + 30 s with W = 90 s: now = [T0 - 60 s, T0 + 30 s) from seconds; a week ago = the 2
    minutes ending at minute(t) - 7d = [T0 - 7d - 120 s, T0 - 7d), scaled by 90 / 120."""
    r = rule(kind="change", change_mode="absolute", op="above", value=0, window_s=90)
    s = store_for(r)
    s.add(PROJECT, T0 - 70_000, conversions=50)  # before the window now
    s.add(PROJECT, T0 + 29_000, conversions=6)  # the last second of the window now
    s.add(PROJECT, T0 - WEEK_MS - 120_000, conversions=8)  # the week-ago minutes
    s.add(PROJECT, T0 - WEEK_MS, conversions=100)  # after them
    ev = evaluate(r, s, T0 + 30_000)
    assert (ev.verdict, ev.value) == (Verdict.FALSE, 0.0)  # 6 - 8 x 90 / 120
    rate = rule(
        kind="change", change_mode="absolute", op="above", value=0, window_s=90, metric="conversion_rate"
    )
    s.add(PROJECT, T0, traffic=12)
    s.add(PROJECT, T0 - WEEK_MS - 60_000, traffic=16)
    assert evaluate(rate, s, T0 + 30_000).value == 0.0  # 6 / 12 - 8 / 16: a ratio is not scaled


def test_spike_against_the_trailing_day() -> None:
    r = rule(kind="spike", op=None, value=None, min_count=5, factor=3, window_s=60)
    s = store_for(r)
    for m in range(T0 - SPIKE_BASELINE_MS - MINUTE_MS, T0 - MINUTE_MS, MINUTE_MS):
        s.add(PROJECT, m, conversions=10)  # baseline: 10 per 1-minute window
    s.add(PROJECT, T0 - MINUTE_MS, conversions=30)
    ev = evaluate(r, s, T0)
    assert (ev.verdict, ev.value, ev.threshold) == (Verdict.FALSE, 30.0, 30.0)  # not more than 3 x 10
    s.add(PROJECT, T0 - MINUTE_MS, conversions=1)
    assert evaluate(r, s, T0).verdict is Verdict.TRUE
    quiet = store_for(r)
    quiet.add(PROJECT, T0 - MINUTE_MS, conversions=4)
    assert evaluate(r, quiet, T0).verdict is Verdict.FALSE  # baseline 0 but fewer than min_count
    quiet.add(PROJECT, T0 - MINUTE_MS, conversions=1)
    assert (evaluate(r, quiet, T0).verdict, evaluate(r, quiet, T0).threshold) == (Verdict.TRUE, 5.0)
    assert evaluate(r, store_for(r), T0).verdict is Verdict.NO_DATA


def test_the_spike_baseline_is_whole_minutes_before_the_window() -> None:
    """W = 30 s at t = T0 + 20 s: the window is [T0 - 10 s, T0 + 20 s); the baseline is the 24 h of
    minutes before minute(T0 - 10 s) = T0 - 60 s (the 50 s in between are in neither)."""
    r = rule(kind="spike", op=None, value=None, min_count=1, factor=2, window_s=30)
    s = store_for(r)
    s.add(PROJECT, T0 - SPIKE_BASELINE_MS - 60_000, conversions=2_880)  # first baseline minute
    s.add(PROJECT, T0 - 61_000, conversions=1)  # inside the baseline's last minute
    s.add(PROJECT, T0 - 30_000, conversions=1_000)  # in neither
    s.add(PROJECT, T0 - 10_000, conversions=3)  # the window's first second
    ev = evaluate(r, s, T0 + 20_000)  # baseline = 2 881 x 30 s / 24 h = 1.0003...
    assert (ev.verdict, ev.value) == (Verdict.TRUE, 3.0) and ev.threshold == 2 * 2_881 * 30 / 86_400
    assert evaluate(r, s, T0 + 21_000).verdict is Verdict.NO_DATA  # [T0 - 9 s, ...): no data left


def test_no_baseline_before_the_scope_was_counted() -> None:
    change = rule(kind="change", change_mode="absolute", op="above", value=0)
    s = store_for(change, since_ms=T0 - WEEK_MS - MINUTE_MS)  # counted from 1 minute into the old window
    s.add(PROJECT, T0 - MINUTE_MS, conversions=6)
    s.add(PROJECT, T0 - WEEK_MS - MINUTE_MS, conversions=1)
    assert evaluate(change, s, T0).verdict is Verdict.NO_DATA
    assert evaluate(change, s, T0 + MINUTE_MS).verdict is Verdict.TRUE  # old window now fully counted
    spike = rule(kind="spike", op=None, value=None, min_count=1, factor=2, window_s=60)
    s = store_for(spike, since_ms=T0 - 3 * MINUTE_MS)
    s.add(PROJECT, T0 - 3 * MINUTE_MS, conversions=2)
    s.add(PROJECT, T0 - MINUTE_MS, conversions=3)
    ev = evaluate(spike, s, T0)  # baseline over the 2 minutes counted: 2 x 60 / 120 = 1
    assert (ev.verdict, ev.threshold) == (Verdict.TRUE, 2.0)
    assert evaluate(spike, store_for(spike, since_ms=T0 - MINUTE_MS), T0).verdict is Verdict.NO_DATA


def test_absence_needs_traffic() -> None:
    r = rule(kind="absence", op=None, value=None, absence_s=180, scope={"goal_id": "g"})
    s = store_for(r)
    assert evaluate(r, s, T0).verdict is Verdict.NO_DATA
    s.add(PROJECT, T0 - 3 * MINUTE_MS, traffic=1)
    assert evaluate(r, s, T0).verdict is Verdict.TRUE
    s.add(("g", None, None), T0 - 3 * MINUTE_MS, conversions=1)
    assert evaluate(r, s, T0).verdict is Verdict.FALSE
    assert evaluate(r, s, T0 + MINUTE_MS).verdict is Verdict.NO_DATA  # the window moved past all data
    assert evaluate(r, s, T0 + 1_000).threshold == 180.0  # absence_s


def test_horizons() -> None:
    assert lookback_ms(rule()) == 120_000 == correction_ms(rule())
    change = rule(kind="change", change_mode="absolute")
    assert lookback_ms(change) == WEEK_MS + 180_000 and correction_ms(change) == 120_000
    spike = rule(kind="spike", op=None, value=None, min_count=1, factor=1)
    assert lookback_ms(spike) == SPIKE_BASELINE_MS + 180_000 == correction_ms(spike)
    odd = rule(kind="change", change_mode="absolute", window_s=61)  # the week-ago span: 2 minutes
    assert lookback_ms(odd) == WEEK_MS + 180_000 and correction_ms(odd) == 61_000
