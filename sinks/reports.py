"""Report queries. Parameters are bound server-side ({name:Type}); no value is ever formatted into SQL.

Conversions are read with FINAL (the latest version of each) and counted only when ``is_deleted = 0``
(a reversed conversion counts nowhere). The only SQL that varies is picked from fixed texts by the kind
of filter, never built from a request's values. Sums are taken as Decimal text and rounded here, so the
embedded chdb store and a ClickHouse server answer the very same numbers. Revenue is converted into the
report's currency (``currency=``, else the project's) with the rate of each conversion's day
(:mod:`sinks.fx`; docs/decisions.md 47).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from schemas.reports import (
    ConversionAnalytics,
    ConversionAnalyticsQuery,
    ExperimentReport,
    ExperimentReportQuery,
    GoalConversionsRow,
    ProjectRow,
    ProjectsQuery,
    ProjectsReport,
    RateBase,
    TopEventRow,
    TopEventsQuery,
    TopEventsReport,
    VariationRow,
)
from sinks import report_counters
from sinks.backend import ClickHouseBackend
from sinks.fx import Money, load_book, project_currency

#: Top-5 reports answered from the writers' counters, per project (the embedded tests see the fast path taken)
TOP5_FROM_COUNTERS: Counter[str] = Counter()

_PERIOD = "occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}"
_SEEN_IN_PERIOD = (
    "first_seen_at >= {start:DateTime64(3, 'UTC')} AND first_seen_at < {end:DateTime64(3, 'UTC')}"
)

#: Conversions filter per rate base (the attributed touch under the project's reporting model).
_CONVERSION_FILTERS: dict[RateBase, str] = {
    "visitors": "",
    "campaign_visitors": "AND attributed_campaign = {campaign:String}",
    "clicks": "AND attributed_link_id = {link:String}",
    "push_opens": "AND attributed_push_hash = {push:String}",
}

#: Revenue, two steps (sinks/fx.py converts): the report's query gives each group's sum of the amounts as
#: sent and the currencies with an amount; a group in one currency that needs no rate (``''``, the target,
#: or no target) is done. Otherwise a second query gives that report's conversions with an amount per
#: (group, currency, day), converted with the rate of the day. Single-currency projects never pay for it.
_MONEY = "toString(sum(revenue) AS revenue_total) AS revenue_text, groupUniqArrayIf(currency, revenue != 0)"
_PARTS = """
SELECT __GROUP__, currency, toDate(occurred_at) AS day, toString(sum(revenue)), count()
FROM __SOURCE__ AND revenue != 0 AND has({groups:Array(String)}, __GROUP__)
GROUP BY __GROUP__, currency, day
"""


def _parts_sql(group: str, source: str) -> str:
    return _PARTS.replace("__GROUP__", group).replace("__SOURCE__", source)


#: Per goal: conversions and revenue. Ties on the conversions are all kept: the final order breaks them
#: by the (converted) revenue, then the goal id. The converters (distinct visitors) are counted after, for
#: the winning goals only (CONVERTERS_BY_BASE): the costly part of the report, done for 5 goals, not all.
_TOP_GOALS = f"""
SELECT goal_id, count() AS conversions, {_MONEY}
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
_CONVERSIONS_SOURCE = (
    "conversions FINAL WHERE project_id = {project:String} AND " + _PERIOD + " AND is_deleted = 0 "
)

#: Experiment variation: conversions of the visitors who saw it (in the period), made after they saw it.
_EXPOSED = f"""
SELECT visitor_id, min(first_seen_at) AS seen_at
FROM variation_exposures FINAL
WHERE project_id = {{project:String}} AND experiment_id = {{experiment:String}}
  AND variation_id = {{variation:String}} AND {_SEEN_IN_PERIOD}
GROUP BY visitor_id
"""
_EXPERIMENT_SOURCE = f"""(
    SELECT c.goal_id AS goal_id, c.visitor_id AS visitor_id, c.visitor_hash AS visitor_hash,
           c.revenue AS revenue, c.currency AS currency, c.occurred_at AS occurred_at
    FROM (
        SELECT goal_id, visitor_id, visitor_hash, revenue, currency, occurred_at
        FROM {_CONVERSIONS_SOURCE}
    ) AS c
    INNER JOIN ({_EXPOSED}) AS x ON c.visitor_id = x.visitor_id
    WHERE c.occurred_at >= x.seen_at
) WHERE 1 """
_TOP_SOURCES: dict[RateBase, str] = {
    **{base: _CONVERSIONS_SOURCE + f for base, f in _CONVERSION_FILTERS.items()},
    "exposed_visitors": _EXPERIMENT_SOURCE,
}
TOP_GOALS_BY_BASE: dict[RateBase, str] = {
    base: _TOP_GOALS.replace("__SOURCE__", source) for base, source in _TOP_SOURCES.items()
}
CONVERTERS_BY_BASE: dict[RateBase, str] = {
    base: _CONVERTERS.replace("__SOURCE__", source) for base, source in _TOP_SOURCES.items()
}
TOP_GOALS_PARTS_BY_BASE: dict[RateBase, str] = {
    base: _parts_sql("goal_id", source) for base, source in _TOP_SOURCES.items()
}
TOP_GOALS_EXPERIMENT_SQL = TOP_GOALS_BY_BASE["exposed_visitors"]
TOP_GOALS_SQL = TOP_GOALS_BY_BASE["visitors"]  # the unfiltered Top-5
VISITORS_SQL = f"""
SELECT uniqExact(visitor_id), uniqExact(visitor_id)
FROM events_raw
WHERE project_id = {{project:String}} AND {_PERIOD}
"""

#: (visitors, rate base count) per rate base, from the raw events (exact, slow on big periods).
BASE_SQL: dict[RateBase, str] = {
    "visitors": VISITORS_SQL,
    "campaign_visitors": f"""
SELECT uniqExact(visitor_id), uniqExact(visitor_id)
FROM events_raw
WHERE project_id = {{project:String}} AND {_PERIOD}
  AND (seg_campaign = {{campaign:String}}
       OR (seg_campaign = '' AND attributes['utm_campaign'] = {{campaign:String}}))
""",
    "clicks": f"""
SELECT uniqExact(visitor_id), uniqExact(event_id)
FROM events_raw
WHERE project_id = {{project:String}} AND {_PERIOD} AND type = 'click' AND link_id = {{link:String}}
""",
    "push_opens": f"""
SELECT uniqExact(visitor_id), uniqExact(event_id)
FROM events_raw
WHERE project_id = {{project:String}} AND {_PERIOD} AND type = 'push_open' AND push_hash = {{push:String}}
""",
    "exposed_visitors": f"SELECT count(), count() FROM ({_EXPOSED})",
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
        "edge1": _ts(full_start),
        "edge2": _ts(full_end),
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


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def _rate(numerator: int, denominator: int) -> float:
    return round(numerator / denominator, 6) if denominator else 0.0


def report_filters(query: object) -> dict[str, str]:
    """The Top-5's filters a query sets (campaign, link, push, experiment, variation), as query parameters;
    shared by every report that takes them (the Top-5, the series)."""
    return {
        name: value
        for name in ("campaign", "link", "push", "experiment", "variation")
        if (value := getattr(query, name, None)) is not None
    }


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
        "start": _ts(start),
        "end": _ts(end),
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
        top = [row[:4] for row in with_converters]
        converters_of = {str(row[0]): int(row[4]) for row in with_converters}
        parts_sql = counters.parts_sql
    else:
        base_answer, top, converters_of = _exact_goals(backend, query, base, start, end, params)
        parts_sql = TOP_GOALS_PARTS_BY_BASE[base]
    per_conversion = base in ("clicks", "push_opens")  # Pushwoosh / PVTLNK: conversions per open/click
    found = [
        (str(goal_id), int(conversions), converters_of.get(str(goal_id), 0), revenue, currencies)
        for goal_id, conversions, revenue, currencies in top
    ]
    target = query.currency or (target_answer.result() if target_answer else None)
    money = _group_money(backend, target, [(g, r, cs) for g, _, _, r, cs in found], parts_sql, params)
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
                conversion_rate=_rate(conversions if per_conversion else converters, base_n),
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
        **_money_fields(total),
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


def _group_money(
    backend: ClickHouseBackend,
    target: str | None,
    found: Sequence[tuple[str, object, Sequence[str]]],
    parts_sql: str,
    params: dict[str, Any],
) -> dict[str, Money]:
    """Each group's revenue from ``found`` = (group, sum of the amounts as sent, currencies with an
    amount), asking ``parts_sql`` for (group, currency, day) sums only when a group needs a rate or mixes
    currencies."""
    money = {group: Money(target) for group, _, _ in found}
    simple = all(
        len(currencies) <= 1 and (target is None or not currencies or currencies[0] in ("", target))
        for _, _, currencies in found
    )
    if simple:
        for group, revenue, currencies in found:
            if currencies:  # one currency, no rate needed: the day does not matter
                money[group].add(None, str(currencies[0]), date.min, Decimal(str(revenue)), 0)
        return money
    parts = backend.query(parts_sql, {**params, "groups": list(money)})
    book = None
    if target is not None:
        last = max((_day(p[2]) for p in parts), default=date.min)
        book = load_book(backend, target, {str(p[1]) for p in parts}, last)
    for group, currency, day, amount, counted in parts:
        money[str(group)].add(book, str(currency), _day(day), Decimal(str(amount)), int(counted))
    return money


def _day(value: object) -> date:
    return value.date() if isinstance(value, datetime) else value  # type: ignore[return-value]


def _money_fields(money: Money) -> dict[str, Any]:
    return {
        "currency": money.target,
        "revenue_raw": money.raw_values(),
        "unconverted_conversions": money.unconverted,
    }


_ANALYTICS_SCOPE = (
    "({project:String} = '' OR project_id = {project:String}) AND "
    "occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}"
)
LINK_CLICKS_SQL = f"""
SELECT uniqExact(event_id)
FROM events_raw
WHERE {_ANALYTICS_SCOPE} AND type = 'click' AND link_id = {{link:String}}
"""
LINK_CONVERSIONS_SQL = f"""
SELECT count(),
       avgIf(time_to_convert_ms, time_to_convert_ms IS NOT NULL),
       quantileExactInclusiveIf(0.5)(time_to_convert_ms, time_to_convert_ms IS NOT NULL),
       countIf(time_to_convert_ms IS NOT NULL)
FROM conversions FINAL
WHERE {_ANALYTICS_SCOPE} AND is_deleted = 0 AND attributed_link_id = {{link:String}}
"""
_LINK_SOURCE = (
    "conversions FINAL WHERE "
    + _ANALYTICS_SCOPE
    + " AND is_deleted = 0 AND attributed_link_id = {link:String} "
)
LINK_GOALS_SQL = f"""
SELECT goal_id, count() AS conversions, {_MONEY}
FROM {_LINK_SOURCE}
GROUP BY goal_id
"""
LINK_GOALS_PARTS_SQL = _parts_sql("goal_id", _LINK_SOURCE)


def _seconds(ms: object) -> float | None:
    if ms is None:
        return None
    value = float(ms)  # type: ignore[arg-type]
    return None if math.isnan(value) else round(value / 1000, 3)


def conversion_analytics(
    backend: ClickHouseBackend, query: ConversionAnalyticsQuery, now: datetime | None = None
) -> ConversionAnalytics:
    start, end = query.period(now)
    params = {"project": query.project or "", "link": query.link_id, "start": _ts(start), "end": _ts(end)}
    clicks = int(backend.query(LINK_CLICKS_SQL, params)[0][0])
    n, mean_ms, median_ms, timed = backend.query(LINK_CONVERSIONS_SQL, params)[0]
    conversions = int(n)
    found = [(str(g), int(c), r, cs) for g, c, r, cs in backend.query(LINK_GOALS_SQL, params)]
    target = query.currency or project_currency(backend, query.project)
    money = _group_money(backend, target, [(g, r, cs) for g, _, r, cs in found], LINK_GOALS_PARTS_SQL, params)
    found.sort(key=lambda r: (-r[1], -money[r[0]].converted, r[0]))
    total = Money(target)
    for goal, *_ in found:
        total.merge(money[goal])
    rows = [
        GoalConversionsRow(
            goal_id=g,
            conversions=c,
            total_value=money[g].value,
            average_value=round(money[g].value / c, 4) if c else 0.0,
        )
        for g, c, _, _ in found
    ]
    total_value = total.value
    return ConversionAnalytics(
        link_id=query.link_id,
        project=query.project,
        days=query.days,
        from_=start,
        to=end,
        clicks=clicks,
        conversions=conversions,
        conversion_rate=_rate(conversions, clicks),
        total_value=total_value,
        average_value=round(total_value / conversions, 4) if conversions else 0.0,
        time_to_convert_mean_s=_seconds(mean_ms) if int(timed) else None,
        time_to_convert_median_s=_seconds(median_ms) if int(timed) else None,
        **_money_fields(total),
        rows=rows,
    )


EXPOSURES_SQL = f"""
SELECT variation_id, uniqExact(visitor_id)
FROM variation_exposures FINAL
WHERE project_id = {{project:String}} AND experiment_id = {{experiment:String}} AND {_SEEN_IN_PERIOD}
GROUP BY variation_id
ORDER BY variation_id
"""
_VARIATION_SOURCE = f"""(
    SELECT x.variation_id AS variation_id, c.visitor_id AS visitor_id, c.revenue AS revenue,
           c.currency AS currency, c.occurred_at AS occurred_at
    FROM (
        SELECT visitor_id, revenue, currency, occurred_at
        FROM {_CONVERSIONS_SOURCE}
          AND ({{goal:String}} = '' OR goal_id = {{goal:String}})
    ) AS c
    INNER JOIN (
        SELECT variation_id, visitor_id, min(first_seen_at) AS seen_at
        FROM variation_exposures FINAL
        WHERE project_id = {{project:String}} AND experiment_id = {{experiment:String}} AND {_SEEN_IN_PERIOD}
        GROUP BY variation_id, visitor_id
    ) AS x ON c.visitor_id = x.visitor_id
    WHERE c.occurred_at >= x.seen_at
) WHERE 1 """
VARIATION_CONVERSIONS_SQL = f"""
SELECT variation_id, count() AS conversions, uniqExact(visitor_id) AS converters, {_MONEY}
FROM {_VARIATION_SOURCE}
GROUP BY variation_id
ORDER BY variation_id
"""
VARIATION_PARTS_SQL = _parts_sql("variation_id", _VARIATION_SOURCE)

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def rate_difference_ci(
    converters: int, exposures: int, base_converters: int, base_exposures: int
) -> tuple[float, float, float] | None:
    """Difference of two proportions (variation minus baseline) with its 95% confidence interval, by the
    normal approximation with the unpooled standard error. None when either side has no exposures."""
    if exposures <= 0 or base_exposures <= 0:
        return None
    p1, p0 = converters / exposures, base_converters / base_exposures
    se = math.sqrt(p1 * (1 - p1) / exposures + p0 * (1 - p0) / base_exposures)
    diff = p1 - p0
    return round(diff, 6), round(diff - Z95 * se, 6), round(diff + Z95 * se, 6)


def experiment_report(
    backend: ClickHouseBackend, query: ExperimentReportQuery, now: datetime | None = None
) -> ExperimentReport:
    start, end = query.period(now)
    params = {
        "project": query.project,
        "experiment": query.experiment,
        "goal": query.goal or "",
        "start": _ts(start),
        "end": _ts(end),
    }
    exposures = {str(v): int(n) for v, n in backend.query(EXPOSURES_SQL, params)}
    found = [
        (str(v), int(c), int(u), r, cs) for v, c, u, r, cs in backend.query(VARIATION_CONVERSIONS_SQL, params)
    ]
    target = query.currency or project_currency(backend, query.project)
    money = _group_money(
        backend, target, [(v, r, cs) for v, _, _, r, cs in found], VARIATION_PARTS_SQL, params
    )
    total = Money(target)
    converted: dict[str, tuple[int, int, float]] = {}
    for v, c, u, _, _ in found:
        total.merge(money[v])
        converted[v] = (c, u, money[v].value)
    variations = sorted(set(exposures) | set(converted))
    baseline = query.baseline if query.baseline is not None else (variations[0] if variations else None)
    if baseline is not None and baseline not in variations:
        variations = sorted([*variations, baseline])
    b_exp = exposures.get(baseline or "", 0)
    b_conv = converted.get(baseline or "", (0, 0, 0.0))[1]
    rows = []
    for v in variations:
        n_exp = exposures.get(v, 0)
        conversions, converters, revenue = converted.get(v, (0, 0, 0.0))
        ci = None if v == baseline else rate_difference_ci(converters, n_exp, b_conv, b_exp)
        rows.append(
            VariationRow(
                variation_id=v,
                exposures=n_exp,
                conversions=conversions,
                converters=converters,
                conversion_rate=_rate(converters, n_exp),
                revenue=revenue,
                is_baseline=v == baseline,
                difference=ci[0] if ci else None,
                ci95_low=ci[1] if ci else None,
                ci95_high=ci[2] if ci else None,
            )
        )
    return ExperimentReport(
        project=query.project,
        experiment=query.experiment,
        goal=query.goal,
        from_=start,
        to=end,
        baseline=baseline,
        **_money_fields(total),
        rows=rows,
    )


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
