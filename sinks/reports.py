"""Report queries. Parameters are bound server-side ({name:Type}); no value is ever formatted into SQL."""

from __future__ import annotations

from datetime import datetime

from schemas.reports import TopEventRow, TopEventsQuery, TopEventsReport
from sinks.backend import ClickHouseBackend

TOP_GOALS_SQL = """
SELECT goal_id,
       count() AS conversions,
       uniqExact(visitor_id) AS converters,
       toFloat64(sum(revenue)) AS revenue
FROM conversions FINAL
WHERE project_id = {project:String}
  AND occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}
GROUP BY goal_id
ORDER BY conversions DESC, revenue DESC, goal_id ASC
LIMIT {limit:UInt32}
"""

VISITORS_SQL = """
SELECT uniqExact(visitor_id)
FROM events_raw
WHERE project_id = {project:String}
  AND occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}
"""


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def top_events(
    backend: ClickHouseBackend, query: TopEventsQuery, now: datetime | None = None
) -> TopEventsReport:
    start, end = query.period(now)
    params = {"project": query.project, "start": _ts(start), "end": _ts(end), "limit": query.limit}
    visitors = int(backend.query(VISITORS_SQL, params)[0][0])
    rows = []
    for goal_id, conversions, converters, revenue in backend.query(TOP_GOALS_SQL, params):
        rate = round(int(converters) / visitors, 6) if visitors else 0.0
        rows.append(
            TopEventRow(
                goal_id=str(goal_id),
                conversions=int(conversions),
                converters=int(converters),
                conversion_rate=rate,
                revenue=round(float(revenue), 4),
            )
        )
    return TopEventsReport(project=query.project, from_=start, to=end, visitors=visitors, rows=rows)
