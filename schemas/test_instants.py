"""epoch_ms: exact integer unix milliseconds, against a plain calendar computation."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.instants import epoch_ms

_EPOCH_DAY = date(1970, 1, 1).toordinal()
_OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def exact_ms(dt: datetime) -> int:
    """Unix ms by whole-number calendar arithmetic (no floats, no timedelta division)."""
    u = dt.astimezone(UTC)
    days = u.toordinal() - _EPOCH_DAY
    return (((days * 24 + u.hour) * 60 + u.minute) * 60 + u.second) * 1000 + u.microsecond // 1000


# Any aware instant with millisecond precision (what the edge's times are after a JSON round trip),
# in any UTC offset, 1900..2200. The float form int(dt.timestamp() * 1000) is ~0.6% wrong over this
# range (exact only from 2004-11 to 2038-01); the explicit examples are instants it gets 1 ms low.
aware_ms = st.builds(
    lambda d, tz: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC).astimezone(tz),
    st.datetimes(datetime(1900, 1, 2), datetime(2199, 12, 31)),
    _OFFSETS,
)


@settings(max_examples=2000)
@given(aware_ms)
@example(datetime(2004, 5, 31, 13, 17, 20, 909000, tzinfo=UTC))
@example(datetime(2107, 4, 23, 20, 12, 32, 506000, tzinfo=timezone(timedelta(hours=2))))
def test_epoch_ms_is_the_exact_integer_millisecond(dt: datetime) -> None:
    assert epoch_ms(dt) == exact_ms(dt)


@given(st.datetimes(datetime(1900, 1, 2), datetime(2199, 12, 31)))
def test_epoch_ms_floors_microseconds_and_takes_naive_times_as_utc(dt: datetime) -> None:
    assert epoch_ms(dt) == exact_ms(dt.replace(tzinfo=UTC)) == epoch_ms(dt.replace(tzinfo=UTC))


def test_epoch_ms_before_1970_floors_towards_the_past() -> None:
    assert epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1
    assert epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)) == -500
    assert epoch_ms(datetime(1970, 1, 1, tzinfo=UTC)) == 0
