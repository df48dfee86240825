"""Instants as integer unix milliseconds, computed exactly.

``int(dt.timestamp() * 1000)`` is not exact: the float product can land just below the integer (an
instant at ``.909`` s giving ``...908``), about 0.6% of millisecond-precision instants before 2004-11 or
after 2038-01 (in between it happens to be exact). Session ids, state expiries and alert windows are
derived from these integers, so they are computed with timedelta arithmetic (integer microseconds)
instead, as cheap as the float form (decision 166).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAIVE_EPOCH = datetime(1970, 1, 1)
ONE_MS = timedelta(milliseconds=1)


def epoch_ms(dt: datetime) -> int:
    """Unix milliseconds of ``dt``, floored (exact before 1970 too); a naive time is taken as UTC."""
    return (dt - (EPOCH if dt.tzinfo is not None else NAIVE_EPOCH)) // ONE_MS
