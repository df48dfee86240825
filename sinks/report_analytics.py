"""Link analytics (PVTLNK's conversion metrics of a link) and the experiment report (per variation, with
the difference to the baseline and its 95% interval). Shared fragments: :mod:`sinks.report_common`."""

from __future__ import annotations

import math
from datetime import datetime

from schemas.reports import (
    ConversionAnalytics,
    ConversionAnalyticsQuery,
    ExperimentReport,
    ExperimentReportQuery,
    GoalConversionsRow,
    VariationRow,
)
from sinks.backend import ClickHouseBackend
from sinks.fx import Money, project_currency
from sinks.report_common import (
    CONVERSIONS_SOURCE,
    MONEY,
    SEEN_IN_PERIOD,
    group_money,
    money_fields,
    parts_sql,
    rate,
    ts,
)

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
SELECT goal_id, count() AS conversions, {MONEY}
FROM {_LINK_SOURCE}
GROUP BY goal_id
"""
LINK_GOALS_PARTS_SQL = parts_sql("goal_id", _LINK_SOURCE)


def _seconds(ms: object) -> float | None:
    if ms is None:
        return None
    value = float(ms)  # type: ignore[arg-type]
    return None if math.isnan(value) else round(value / 1000, 3)


def conversion_analytics(
    backend: ClickHouseBackend, query: ConversionAnalyticsQuery, now: datetime | None = None
) -> ConversionAnalytics:
    start, end = query.period(now)
    params = {"project": query.project or "", "link": query.link_id, "start": ts(start), "end": ts(end)}
    clicks = int(backend.query(LINK_CLICKS_SQL, params)[0][0])
    n, mean_ms, median_ms, timed = backend.query(LINK_CONVERSIONS_SQL, params)[0]
    conversions = int(n)
    found = [(str(g), int(c), r, cs) for g, c, r, cs in backend.query(LINK_GOALS_SQL, params)]
    target = query.currency or project_currency(backend, query.project)
    money = group_money(backend, target, [(g, r, cs) for g, _, r, cs in found], LINK_GOALS_PARTS_SQL, params)
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
        conversion_rate=rate(conversions, clicks),
        total_value=total_value,
        average_value=round(total_value / conversions, 4) if conversions else 0.0,
        time_to_convert_mean_s=_seconds(mean_ms) if int(timed) else None,
        time_to_convert_median_s=_seconds(median_ms) if int(timed) else None,
        **money_fields(total),
        rows=rows,
    )


EXPOSURES_SQL = f"""
SELECT variation_id, uniqExact(visitor_id)
FROM variation_exposures FINAL
WHERE project_id = {{project:String}} AND experiment_id = {{experiment:String}} AND {SEEN_IN_PERIOD}
GROUP BY variation_id
ORDER BY variation_id
"""
_VARIATION_SOURCE = f"""(
    SELECT x.variation_id AS variation_id, c.visitor_id AS visitor_id, c.revenue AS revenue,
           c.currency AS currency, c.occurred_at AS occurred_at
    FROM (
        SELECT visitor_id, revenue, currency, occurred_at
        FROM {CONVERSIONS_SOURCE}
          AND ({{goal:String}} = '' OR goal_id = {{goal:String}})
    ) AS c
    INNER JOIN (
        SELECT variation_id, visitor_id, min(first_seen_at) AS seen_at
        FROM variation_exposures FINAL
        WHERE project_id = {{project:String}} AND experiment_id = {{experiment:String}} AND {SEEN_IN_PERIOD}
        GROUP BY variation_id, visitor_id
    ) AS x ON c.visitor_id = x.visitor_id
    WHERE c.occurred_at >= x.seen_at
) WHERE 1 """
VARIATION_CONVERSIONS_SQL = f"""
SELECT variation_id, count() AS conversions, uniqExact(visitor_id) AS converters, {MONEY}
FROM {_VARIATION_SOURCE}
GROUP BY variation_id
ORDER BY variation_id
"""
VARIATION_PARTS_SQL = parts_sql("variation_id", _VARIATION_SOURCE)

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
        "start": ts(start),
        "end": ts(end),
    }
    exposures = {str(v): int(n) for v, n in backend.query(EXPOSURES_SQL, params)}
    found = [
        (str(v), int(c), int(u), r, cs) for v, c, u, r, cs in backend.query(VARIATION_CONVERSIONS_SQL, params)
    ]
    target = query.currency or project_currency(backend, query.project)
    money = group_money(
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
                conversion_rate=rate(converters, n_exp),
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
        **money_fields(total),
        rows=rows,
    )
