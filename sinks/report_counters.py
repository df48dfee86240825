"""The Top-5 read from the writers' counters (issue 16 item 5; docs/decisions.md 100-102).

Used for the project-wide rate base ("visitors") over whole UTC days, once the project's counters are
marked complete (``report_counters_ready``): the goals' conversions and revenue from the goal-day
counters, the converters of the winners and the period's visitors from the (day, previous day) pair
counts. Every read is a ``FINAL`` over O(goals x days) or O(days^2) rows, not over the conversions or the
visitors, and gives the numbers of the exact reading (tests/integration/test_reports_top5_exact.py).
Anything else (a partial first or last day, another rate base, counters not complete) returns None and
the report takes the exact reading of sinks/reports.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from schemas.reports import RateBase
from sinks.backend import ClickHouseBackend

READY_SQL = """
SELECT max(ready) FROM report_counters_ready FINAL WHERE project_id = {project:String}
"""
MARK_READY_SQL = """
INSERT INTO report_counters_ready (project_id, ready, max_days, retention_days, version)
VALUES ({project:String}, {ready:UInt8}, {max_days:UInt32}, {retention_days:UInt32},
        toUInt64(toUnixTimestamp64Milli(now64(3))))
"""
_DAYS = "project_id = {project:String} AND day >= {full_start:Date} AND day < {full_end:Date}"
#: the top goals with their converters, one round trip: goal, conversions, revenue text, currencies with an
#: amount (the columns of sinks.reports' top goals), converters (the pairs of the goal's live conversions)
TOP_GOALS_SQL = f"""
SELECT g.goal_id, g.n, g.revenue_text, g.currencies, c.converters
FROM (
    SELECT goal_id, sum(conversions) AS n, toString(sum(revenue)) AS revenue_text,
           groupUniqArrayIf(currency, with_revenue > 0) AS currencies
    FROM report_goal_days FINAL
    WHERE {_DAYS}
    GROUP BY goal_id
    HAVING n > 0
    ORDER BY n DESC
    LIMIT {{limit:UInt32}} WITH TIES
) AS g
LEFT JOIN (
    SELECT goal_id, sum(converters) AS converters
    FROM report_goal_pairs FINAL
    WHERE {_DAYS} AND prev_day < {{full_start:Date}}
    GROUP BY goal_id
) AS c ON g.goal_id = c.goal_id
SETTINGS join_use_nulls = 0
"""
#: as sinks.reports' parts: (goal, currency, day, sum of the amounts, conversions with an amount)
PARTS_SQL = f"""
SELECT goal_id, currency, day, toString(sum(revenue)), sum(with_revenue) AS counted
FROM report_goal_days FINAL
WHERE {_DAYS} AND has({{groups:Array(String)}}, goal_id)
GROUP BY goal_id, currency, day
HAVING counted > 0
"""
#: visitors, rate base count (the same), and whether the project's counters are complete (0: they are not,
#: the report takes the exact reading) with the periods they keep exact (``answers``): one round trip,
#: asked next to the goals
VISITORS_SQL = f"""
SELECT sum(visitors), sum(visitors),
       (SELECT (max(ready), max(max_days), max(retention_days))
        FROM report_counters_ready FINAL WHERE project_id = {{project:String}})
FROM report_visit_pairs FINAL
WHERE {_DAYS} AND kind = 'all' AND key = '*' AND prev_day < {{full_start:Date}}
"""


@dataclass(frozen=True)
class CounterReads:
    """The SQL texts the report runs instead of its exact ones, and their extra parameters. ``base_sql``
    answers (visitors, rate base count, ready), ``top_sql`` the top goals with their converters; a report
    whose ``ready`` is 0 must be answered by the exact reading instead."""

    base_sql: str
    top_sql: str
    parts_sql: str
    params: dict[str, object]


def whole_days(start: datetime, end: datetime) -> bool:
    return start < end and all(t.astimezone(UTC).time() == time() for t in (start, end))


def reads_for(base: RateBase, start: datetime, end: datetime) -> CounterReads | None:
    """The counter reads for this report, or None when it must take the exact reading (the project's
    readiness comes with the visitors: ``CounterReads``)."""
    if base != "visitors" or not whole_days(start, end):
        return None
    return CounterReads(
        VISITORS_SQL,
        TOP_GOALS_SQL,
        PARTS_SQL,
        {
            "full_start": start.astimezone(UTC).date().isoformat(),
            "full_end": end.astimezone(UTC).date().isoformat(),
        },
    )


def answers(ready: object, start: datetime, end: datetime, now: datetime) -> bool:
    """Whether counters marked ``ready`` (VISITORS_SQL's third column: ready, max_days, retention_days)
    answer the whole days [start, end) exactly: marked, the period no longer than ``max_days`` days, and
    starting on or after the first day the retention keeps whole (decision 151)."""
    flag, max_days, retention_days = (int(x) for x in ready)  # type: ignore[attr-defined]
    if not flag:
        return False
    a, b = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    if max_days and (b - a).days > max_days:
        return False
    return not retention_days or a > now.astimezone(UTC).date() - timedelta(days=retention_days)


def is_ready(backend: ClickHouseBackend, project: str) -> bool:
    rows = backend.query(READY_SQL, {"project": project})
    return bool(rows and rows[0][0])


def mark_ready(
    backend: ClickHouseBackend, project: str, ready: bool = True, max_days: int = 0, retention_days: int = 0
) -> None:
    """Say that the counters hold all of ``project``'s data (or no longer do: ``ready=False``), exact for
    periods of at most ``max_days`` days starting within the last ``retention_days`` (0: any)."""
    backend.command(
        MARK_READY_SQL,
        {"project": project, "ready": int(ready), "max_days": max_days, "retention_days": retention_days},
    )
