"""month_masks: the day bits of whole-day periods, checked against a day-by-day walk."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sinks.reports import month_masks


def walk(full_start: date, full_end: date) -> dict[date, int]:
    """Per month, the bits of the days of [full_start, full_end) in it (the slow, obvious way)."""
    masks: dict[date, int] = {}
    day = full_start
    while day < full_end:
        month = day.replace(day=1)
        masks[month] = masks.get(month, 0) | 1 << (day.day - 1)
        day += timedelta(days=1)
    return masks


def met(first: tuple[date, int], last: tuple[date, int], month: date, days: int) -> bool:
    """The SQL condition of reports._MONTHS_MET, in Python."""
    return (
        first[0] < month < last[0]
        or (month == first[0] and days & first[1] != 0)
        or (month == last[0] and days & last[1] != 0)
    )


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2199, 1, 1)),
    st.integers(min_value=0, max_value=800),
)
def test_a_row_meets_the_period_exactly_when_one_of_its_days_is_in_it(start: date, length: int) -> None:
    end = start + timedelta(days=length)
    first, last = month_masks(start, end)
    want = walk(start, end)
    month = (start - timedelta(days=40)).replace(day=1)
    while month <= end + timedelta(days=40):
        next_month = (month + timedelta(days=32)).replace(day=1)
        for day in (d for d in (1, 15, 28, 29, 30, 31) if month + timedelta(days=d - 1) < next_month):
            bit = 1 << (day - 1)
            inside = bool(want.get(month, 0) & bit)
            assert met(first, last, month, bit) == inside, (start, end, month, day)
        month = next_month


def test_examples() -> None:
    assert month_masks(date(2026, 11, 1), date(2026, 11, 1)) == ((date(2026, 11, 1), 0),) * 2
    assert month_masks(date(2026, 11, 3), date(2026, 11, 5)) == ((date(2026, 11, 1), 0b1100),) * 2
    first, last = month_masks(date(2026, 10, 24), date(2026, 11, 23))
    assert first == (date(2026, 10, 1), 0x7F800000)  # days 24..31: bits 23..30
    assert last == (date(2026, 11, 1), (1 << 22) - 1)  # days 1..22
