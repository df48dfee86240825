"""Retention: a TTL on every table, from the ``TRACKPIPE_RETENTION_DAYS`` setting (0 = keep forever).

Applied after the migrations (``trackpipe migrate``) as ``ALTER TABLE … MODIFY TTL`` / ``REMOVE TTL``.
DDL takes no query parameters, so the number of days is the one value written into SQL: it is checked
to be a plain ``int`` in range first. A table is altered only when its TTL differs from the wanted one
(the ALTER rewrites the table's parts to apply the TTL to rows already stored).
"""

from __future__ import annotations

from sinks.backend import ClickHouseBackend

MAX_DAYS = 36500

#: table -> the time its rows expire from
TTL_COLUMNS = {
    "events_raw": "toDateTime(occurred_at)",
    "conversions": "toDateTime(occurred_at)",
    "sessions": "toDateTime(started_at)",
    "variation_exposures": "toDateTime(first_seen_at)",
    "report_reach_daily": "day",
    "report_visitor_days": "addMonths(month, 1)",  # a month's row goes when its last day does
    "delivery_attempts": "toDateTime(at)",  # the outbound delivery log (issue 13)
}

_CREATE_SQL = (
    "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {t:String}"
)


def check_days(days: object) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_DAYS:
        raise ValueError(f"retention days must be an integer from 0 to {MAX_DAYS} (got {days!r})")
    return days


def ttl_clause(table: str, days: int) -> str:
    return f"{TTL_COLUMNS[table]} + toIntervalDay({check_days(days)})"


def current_ttl_days(backend: ClickHouseBackend, table: str) -> int | None:
    """The table's retention in days as applied by this module, None when it has no TTL."""
    rows = backend.query(_CREATE_SQL, {"t": table})
    if not rows:
        raise RuntimeError(f"table {table} does not exist: run the migrations first")
    create = str(rows[0][0])
    if " TTL " not in create:
        return None
    marker = "toIntervalDay("
    at = create.rfind(marker)
    if at < 0:
        return -1  # a TTL not set by us: replace it
    digits = create[at + len(marker) :].split(")", 1)[0]
    return int(digits) if digits.isdigit() else -1


def apply_retention(backend: ClickHouseBackend, days: int) -> list[str]:
    """Make every table's TTL match ``days`` (0: no TTL); return the tables changed."""
    check_days(days)
    changed = []
    for table in TTL_COLUMNS:
        current = current_ttl_days(backend, table)
        if days == 0 and current is not None:
            backend.command(f"ALTER TABLE {table} REMOVE TTL")
        elif days and current != days:
            backend.command(f"ALTER TABLE {table} MODIFY TTL {ttl_clause(table, days)}")
        else:
            continue
        changed.append(table)
    return changed
