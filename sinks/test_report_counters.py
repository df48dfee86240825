"""Which periods marked counters answer (decision 151): whole days, no longer than the horizon they were
kept with, starting on a day the retention still keeps whole."""

from __future__ import annotations

from datetime import UTC, datetime

from sinks.report_counters import answers

NOW = datetime(2026, 6, 15, 13, 30, tzinfo=UTC)


def d(month: int, day: int) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC)


def test_not_marked_or_withdrawn_never_answers() -> None:
    assert not answers((0, 0, 0), d(6, 1), d(6, 2), NOW)
    assert not answers((0, 400, 0), d(6, 1), d(6, 2), NOW)


def test_a_mark_without_bounds_answers_any_period() -> None:
    assert answers((1, 0, 0), datetime(2016, 1, 1, tzinfo=UTC), d(6, 15), NOW)


def test_periods_longer_than_the_horizon_take_the_exact_reading() -> None:
    assert answers((1, 30, 0), d(5, 1), d(5, 31), NOW)  # 30 days
    assert not answers((1, 30, 0), d(5, 1), d(6, 1), NOW)  # 31 days


def test_periods_starting_before_the_retention_keeps_whole_days_take_the_exact_reading() -> None:
    # 10 days of retention on June 15: rows of June 5 may be gone (TTL), June 6 is whole
    assert answers((1, 0, 10), d(6, 6), d(6, 15), NOW)
    assert not answers((1, 0, 10), d(6, 5), d(6, 15), NOW)
