"""The Top-5 report and the projects list; the link and experiment analytics are in
:mod:`sinks.report_analytics`, the fragments every report shares in :mod:`sinks.report_common`.

Report queries. Parameters are bound server-side ({name:Type}); no value is ever formatted into SQL.

Conversions are read with FINAL (the latest version of each) and counted only when ``is_deleted = 0``
(a reversed conversion counts nowhere). The only SQL that varies is picked from fixed texts by the kind
of filter, never built from a request's values. Sums are taken as Decimal text and rounded here, so the
embedded chdb store and a ClickHouse server answer the very same numbers. Revenue is converted into the
report's currency (``currency=``, else the project's) with the rate of each conversion's day
(:mod:`sinks.fx`; docs/decisions.md 47).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from schemas.reports import (
    ProjectRow,
    ProjectsQuery,
    ProjectsReport,
    RateBase,
    TopEventRow,
    TopEventsQuery,
    TopEventsReport,
)
from sinks import report_counters
from sinks.backend import ClickHouseBackend
from sinks.fx import Money, project_currency
from sinks.report_analytics import conversion_analytics, experiment_report, rate_difference_ci
from sinks.report_common import (
    CONVERSION_FILTERS,
    CONVERSIONS_SOURCE,
    EXPERIMENT_SOURCE,
    EXPOSED,
    MONEY,
    PERIOD,
    group_money,
    money_fields,
    parts_sql,
    rate,
    report_filters,
    ts,
)

__all__ = [  # the analytics and the shared helpers kept importable from here
    "conversion_analytics",
    "experiment_report",
    "projects",
    "rate_difference_ci",
    "report_filters",
    "top_events",
    "ts",
]

#: Top-5 reports answered from the writers' counters, per project (the embedded tests see the fast path taken)
TOP5_FROM_COUNTERS: Counter[str] = Counter()
#: Top-5 reports by reading: ``counters`` or ``exact`` (``trackpipe_report_top5_total`` on /metrics)
TOP5_READINGS: Counter[str] = Counter()


#: Per goal: conversions and revenue. Ties on the conversions are all kept: the final order breaks them
#: by the (converted) revenue, then the goal id. The converters (distinct visitors) are counted after, for
#: the winning goals only (CONVERTERS_BY_BASE): the costly part of the report, done for 5 goals, not all.
_TOP_GOALS = f"""
SELECT goal_id, count() AS conversions, {MONEY}
FROM __SOURCE__
GROUP BY goal_id
ORDER BY conversions DESC
LIMIT {{limit:UInt32}} WITH TIES
"""
_CONVERTERS = """
SELECT goal_id, uniqExact(visitor_hash)
FROM __SOURCE__ AND has({groups:Array(String)}, goal_id)
GROUP BY goal_id
"""
_TOP_SOURCES: dict[RateBase, str] = {
    **{base: CONVERSIONS_SOURCE + f for base, f in CONVERSION_FILTERS.items()},
    "exposed_visitors": EXPERIMENT_SOURCE,
}
TOP_GOALS_BY_BASE: dict[RateBase, str] = {
    base: _TOP_GOALS.replace("__SOURCE__", source) for base, source in _TOP_SOURCES.items()
}
CONVERTERS_BY_BASE: dict[RateBase, str] = {
    base: _CONVERTERS.replace("__SOURCE__", source) for base, source in _TOP_SOURCES.items()
}
TOP_GOALS_PARTS_BY_BASE: dict[RateBase, str] = {
    base: parts_sql("goal_id", source) for base, source in _TOP_SOURCES.items()
}
TOP_GOALS_EXPERIMENT_SQL = TOP_GOALS_BY_BASE["exposed_visitors"]
TOP_GOALS_SQL = TOP_GOALS_BY_BASE["visitors"]  # the unfiltered Top-5
VISITORS_SQL = f"""
SELECT uniqExact(visitor_id), uniqExact(visitor_id)
FROM events_raw
WHERE project_id = {{project:String}} AND {PERIOD}
"""

#: (visitors, rate base count) per rate base, from the raw events (exact, slow on big periods).
BASE_SQL: dict[RateBase, str] = {
    "visitors": VISITORS_SQL,
    "campaign_visitors": f"""
SELECT uniqExact(visitor_id), uniqExact(visitor_id)
FROM events_raw
WHERE project_id = {{project:String}} AND {PERIOD}
  AND (seg_campaign = {{campaign:String}}
       OR (seg_campaign = '' AND attributes['utm_campaign'] = {{campaign:String}}))
""",
    "clicks": f"""
SELECT uniqExact(visitor_id), uniqExact(event_id)
FROM events_raw
WHERE project_id = {{project:String}} AND {PERIOD} AND type = 'click' AND link_id = {{link:String}}
""",
    "push_opens": f"""
SELECT uniqExact(visitor_id), uniqExact(event_id)
FROM events_raw
WHERE project_id = {{project:String}} AND {PERIOD} AND type = 'push_open' AND push_hash = {{push:String}}
""",
    "exposed_visitors": f"SELECT count(), count() FROM ({EXPOSED})",
}

#: The same from the aggregates for the whole days of the period, with the raw events of its partial
#: first and last days: exact, and fast. Visitors of the project or of a campaign come from the visitor
#: day masks (0022_report_visitor_days.sql): a visitor counts when its mask for a month meets the
#: period's days of that month. Clicks and push opens come from the daily sets (0020_report_reach.sql).
_REACH: dict[RateBase, tuple[str, str]] = {
    "visitors": ("all", "1"),
    "campaign_visitors": (
        "campaign",
        "(seg_campaign = {key:String} OR (seg_campaign = '' AND attributes['utm_campaign'] = {key:String}))",
    ),
    "clicks": ("link", "type = 'click' AND link_id = {key:String}"),
    "push_opens": ("push", "type = 'push_open' AND push_hash = {key:String}"),
}
_RAW_EDGES = """
      AND ((occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {edge1:DateTime64(3, 'UTC')})
        OR (occurred_at >= {edge2:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}))"""
#: The rows whose month mask meets the whole days [full_start, full_end): months strictly between the
#: first and the last month of those days count whole; the first and the last month count when their
#: mask meets the period's days of that month (``month_masks``; one month: both are the same).
_MONTHS_MET = """(
        (month > {first_month:Date} AND month < {last_month:Date})
        OR (month = {first_month:Date} AND bitAnd(days, {first_mask:UInt32}) != 0)
        OR (month = {last_month:Date} AND bitAnd(days, {last_mask:UInt32}) != 0))"""
_VISITOR_DAYS_SQL = f"""
SELECT uniqExact(h), uniqExact(h)
FROM (
    SELECT visitor_hash AS h
    FROM report_visitor_days
    WHERE project_id = {{project:String}} AND kind = {{kind:String}} AND key = {{key:String}}
      AND {_MONTHS_MET}
    UNION ALL
    SELECT cityHash64(visitor_id) AS h
    FROM events_raw
    WHERE project_id = {{project:String}} AND __WHERE__{_RAW_EDGES}
)
"""
_REACH_SQL = f"""
SELECT uniqExactMerge(v), uniqExactMerge(e)
FROM (
    SELECT visitors AS v, events AS e
    FROM report_reach_daily
    WHERE project_id = {{project:String}} AND kind = {{kind:String}} AND key = {{key:String}}
      AND day >= {{full_start:Date}} AND day < {{full_end:Date}}
    UNION ALL
    SELECT uniqExactState(visitor_id) AS v, uniqExactState(event_id) AS e
    FROM events_raw
    WHERE project_id = {{project:String}} AND __WHERE__{_RAW_EDGES}
)
"""
REACH_SQL: dict[RateBase, str] = {
    base: (_REACH_SQL if kind in ("link", "push") else _VISITOR_DAYS_SQL).replace("__WHERE__", where)
    for base, (kind, where) in _REACH.items()
}


def reach_params(base: RateBase, query: TopEventsQuery, start: datetime, end: datetime) -> dict[str, object]:
    """Parameters of REACH_SQL: the whole days [full_start, full_end) come from the aggregates, the
    rest of [start, end) from the raw events."""
    first = datetime.combine(start.date(), time(), start.tzinfo)
    full_start = first if first == start else first + timedelta(days=1)
    full_end = datetime.combine(end.date(), time(), end.tzinfo)
    if full_start >= full_end:  # no whole day: all raw
        full_start = full_end = end
    key = {
        "visitors": "*",
        "campaign_visitors": query.campaign,
        "clicks": query.link,
        "push_opens": query.push,
    }
    (first_month, first_mask), (last_month, last_mask) = month_masks(full_start.date(), full_end.date())
    return {
        "kind": _REACH[base][0],
        "key": key[base] or "",
        "first_month": first_month.isoformat(),
        "first_mask": first_mask,
        "last_month": last_month.isoformat(),
        "last_mask": last_mask,
        "full_start": full_start.date().isoformat(),
        "full_end": full_end.date().isoformat(),
        "edge1": ts(full_start),
        "edge2": ts(full_end),
    }


def month_masks(full_start: date, full_end: date) -> tuple[tuple[date, int], tuple[date, int]]:
    """(first month, its day mask), (last month, its day mask) of the days [full_start, full_end), as
    ``report_visitor_days`` stores them (bit d - 1 = day d). Months between the two count whole. No days:
    both masks are 0. One month: the same month and mask twice."""
    if full_start >= full_end:
        month = full_start.replace(day=1)
        return (month, 0), (month, 0)
    last_day = full_end - timedelta(days=1)
    first_month, last_month = full_start.replace(day=1), last_day.replace(day=1)

    def bits(lo: int, hi: int) -> int:  # days lo..hi of a month, both included
        return ((1 << hi) - 1) ^ ((1 << (lo - 1)) - 1)

    if first_month == last_month:
        mask = bits(full_start.day, last_day.day)
        return (first_month, mask), (last_month, mask)
    return (first_month, bits(full_start.day, 31)), (last_month, bits(1, last_day.day))


PROJECTS_SQL = """
SELECT project_id, max(occurred_at) AS last_event_at
FROM events_raw
GROUP BY project_id
ORDER BY last_event_at DESC, project_id ASC
LIMIT {limit:UInt32}
"""

#: The same, among the given projects only (what a read key may see).
PROJECTS_AMONG_SQL = """
SELECT project_id, max(occurred_at) AS last_event_at
FROM events_raw
WHERE project_id IN {only:Array(String)}
GROUP BY project_id
ORDER BY last_event_at DESC, project_id ASC
LIMIT {limit:UInt32}
"""


#: Runs a report's independent queries next to each other (ClickHouseBackend is thread-safe).
_PARALLEL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="trackpipe-report")


def top_events(
    backend: ClickHouseBackend,
    query: TopEventsQuery,
    now: datetime | None = None,
    *,
    use_counters: bool = True,
) -> TopEventsReport:
    """The Top-5; ``use_counters=False``: the exact reading even where the counters could answer (the bench's
    baseline)."""
    now = now if now is not None else datetime.now(UTC)  # one period, also for a fallback
    start, end = query.period(now)
    base = query.rate_base
    filters = report_filters(query)
    params: dict[str, object] = {
        "project": query.project,
        "start": ts(start),
        "end": ts(end),
        "limit": query.limit,
        **filters,
    }
    # whole days of a project with complete counters: the writers' counters (decision 100)
    counters = report_counters.reads_for(base, start, end) if use_counters else None
    target_answer = None if query.currency else _PARALLEL.submit(project_currency, backend, query.project)
    if counters is not None:
        params.update(counters.params)
        base_answer = _PARALLEL.submit(backend.query, counters.base_sql, params)
        with_converters = backend.query(counters.top_sql, params)
        if not report_counters.answers(base_answer.result()[0][2], start, end, now):  # not complete / exact
            return top_events(backend, query, now, use_counters=False)
        TOP5_FROM_COUNTERS[query.project] += 1
        TOP5_READINGS["counters"] += 1
        top = [row[:4] for row in with_converters]
        converters_of = {str(row[0]): int(row[4]) for row in with_converters}
        parts_sql = counters.parts_sql
    else:
        TOP5_READINGS["exact"] += 1
        base_answer, top, converters_of = _exact_goals(backend, query, base, start, end, params)
        parts_sql = TOP_GOALS_PARTS_BY_BASE[base]
    per_conversion = base in ("clicks", "push_opens")  # Pushwoosh / PVTLNK: conversions per open/click
    found = [
        (str(goal_id), int(conversions), converters_of.get(str(goal_id), 0), revenue, currencies)
        for goal_id, conversions, revenue, currencies in top
    ]
    target = query.currency or (target_answer.result() if target_answer else None)
    money = group_money(backend, target, [(g, r, cs) for g, _, _, r, cs in found], parts_sql, params)
    found.sort(key=lambda r: (-r[1], -money[r[0]].converted, r[0]))
    visitors_n, base_n = (int(v) for v in base_answer.result()[0][:2])
    rows = []
    total = Money(target)
    for goal_id, conversions, converters, _, _ in found[: query.limit]:
        total.merge(money[goal_id])
        rows.append(
            TopEventRow(
                goal_id=goal_id,
                conversions=conversions,
                converters=converters,
                conversion_rate=rate(conversions if per_conversion else converters, base_n),
                revenue=money[goal_id].value,
            )
        )
    return TopEventsReport(
        project=query.project,
        from_=start,
        to=end,
        filter=filters,
        visitors=visitors_n,
        rate_base=base,
        rate_base_count=base_n,
        **money_fields(total),
        rows=rows,
    )


def _exact_goals(
    backend: ClickHouseBackend,
    query: TopEventsQuery,
    base: RateBase,
    start: datetime,
    end: datetime,
    params: dict[str, object],
) -> tuple[Future[list[tuple[Any, ...]]], list[tuple[Any, ...]], dict[str, int]]:
    """The exact reading: (the rate base's answer, asked in parallel; the top goals; their converters)."""
    # the rate base is independent of the goals: asked at the same time (a server answers both at once;
    # chdb's backend takes them in turn)
    if base in REACH_SQL:
        reach = {**params, **reach_params(base, query, start, end)}
        base_answer = _PARALLEL.submit(backend.query, REACH_SQL[base], reach)
    else:
        base_answer = _PARALLEL.submit(backend.query, BASE_SQL[base], params)
    top = backend.query(TOP_GOALS_BY_BASE[base], params)
    converters_of: dict[str, int] = {}
    if top:
        groups = [str(goal_id) for goal_id, *_ in top]
        converters_of = {
            str(goal_id): int(n)
            for goal_id, n in backend.query(CONVERTERS_BY_BASE[base], {**params, "groups": groups})
        }
    return base_answer, top, converters_of


def projects(
    backend: ClickHouseBackend, query: ProjectsQuery, only: Collection[str] | None = None
) -> ProjectsReport:
    """The projects with events, most recently active first; ``only``: among these projects alone."""
    if only is None:
        rows = backend.query(PROJECTS_SQL, {"limit": query.limit})
    elif not only:
        rows = []
    else:
        rows = backend.query(PROJECTS_AMONG_SQL, {"limit": query.limit, "only": sorted(only)})
    return ProjectsReport(rows=[ProjectRow(project=str(p), last_event_at=last) for p, last in rows])
