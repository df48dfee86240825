"""Reports over the processing tables: per goal, per attribution model, per variation, sessions.

Parameters are bound server-side; the only SQL that varies is the credit dimension, chosen from a fixed
whitelist. Every query reads with FINAL (latest version per key) and skips reversed rows
(``is_deleted = 1``) after FINAL, so status changes and replays never show twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from sinks.backend import ClickHouseBackend

Dimension = Literal["link_id", "campaign", "touch_id", "push_hash"]
_DIMENSION_COLUMNS: dict[str, str] = {
    "link_id": "credit_link_id",
    "campaign": "credit_campaign",
    "touch_id": "credit_touch_id",
    "push_hash": "credit_push_hash",
}

_PERIOD = "occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}"

GOALS_SQL = f"""
SELECT goal_id,
       countIf(is_deleted = 0) AS conversions,
       uniqExactIf(visitor_id, is_deleted = 0) AS converters,
       toString(sumIf(revenue, is_deleted = 0)) AS revenue,
       countIf(is_deleted = 0 AND status_class = 'provisional') AS provisional,
       countIf(is_deleted = 1) AS reversed,
       countIf(is_deleted = 0 AND attributed_touch_id != '') AS attributed,
       avgIf(time_to_convert_ms, is_deleted = 0 AND time_to_convert_ms IS NOT NULL) AS avg_ttc_ms,
       quantileExactIf(0.5)(time_to_convert_ms, is_deleted = 0 AND time_to_convert_ms IS NOT NULL)
           AS median_ttc_ms
FROM conversions FINAL
WHERE project_id = {{project:String}} AND {_PERIOD}
GROUP BY goal_id
ORDER BY goal_id
"""

MODELS_SQL = """
SELECT goal_id, a_model, a_dim, toString(sum(a_credit)) AS credit_sum, toString(sum(a_revenue)) AS revenue_sum
FROM conversions FINAL
ARRAY JOIN credit_model AS a_model, {column} AS a_dim, credit AS a_credit, credit_revenue AS a_revenue
WHERE project_id = {{project:String}} AND is_deleted = 0 AND {period}
GROUP BY goal_id, a_model, a_dim
ORDER BY goal_id, a_model, a_dim
"""

VARIATION_CONVERSIONS_SQL = f"""
SELECT a_exp, a_var, goal_id, count() AS n, toString(sum(revenue)) AS revenue_sum
FROM conversions FINAL
ARRAY JOIN experiment_ids AS a_exp, variation_ids AS a_var
WHERE project_id = {{project:String}} AND is_deleted = 0 AND {_PERIOD}
GROUP BY a_exp, a_var, goal_id
ORDER BY a_exp, a_var, goal_id
"""

EXPOSURES_SQL = """
SELECT experiment_id, variation_id, count() AS visitors
FROM variation_exposures FINAL
WHERE project_id = {project:String}
  AND first_seen_at >= {start:DateTime64(3, 'UTC')} AND first_seen_at < {end:DateTime64(3, 'UTC')}
GROUP BY experiment_id, variation_id
ORDER BY experiment_id, variation_id
"""

SESSIONS_SQL = """
SELECT count() AS sessions, sum(events) AS events, uniqExact(visitor_id) AS visitors
FROM sessions FINAL
WHERE project_id = {project:String} AND is_deleted = 0
  AND started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
"""


class GoalLine(BaseModel):
    goal_id: str
    conversions: int
    converters: int
    revenue: float
    provisional: int
    reversed: int
    attributed: int
    avg_time_to_convert_s: float | None
    median_time_to_convert_s: float | None


class CreditLine(BaseModel):
    goal_id: str
    model: str
    dimension: str  # "" = unattributed
    credit: float  # conversions credited (fractional), 6 decimals
    revenue: float


class VariationLine(BaseModel):
    experiment_id: str
    variation_id: str
    exposures: int  # distinct visitors who saw it
    conversions: dict[str, int]  # goal -> conversions credited to the variation
    revenue: dict[str, float]


class SessionsLine(BaseModel):
    sessions: int
    events: int
    visitors: int


class ProcessingReport(BaseModel):
    project: str
    goals: list[GoalLine]
    credits: list[CreditLine]
    variations: list[VariationLine]
    sessions: SessionsLine


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def _seconds(value_ms: float | None) -> float | None:
    return None if value_ms is None else round(float(value_ms) / 1000, 3)


def goals(backend: ClickHouseBackend, project: str, start: datetime, end: datetime) -> list[GoalLine]:
    params = {"project": project, "start": _ts(start), "end": _ts(end)}
    out = []
    for g, conv, conv_v, rev, prov, rev_n, attr, avg_ms, med_ms in backend.query(GOALS_SQL, params):
        out.append(
            GoalLine(
                goal_id=str(g),
                conversions=int(conv),
                converters=int(conv_v),
                revenue=round(float(rev), 4),
                provisional=int(prov),
                reversed=int(rev_n),
                attributed=int(attr),
                avg_time_to_convert_s=_seconds(avg_ms) if attr else None,
                median_time_to_convert_s=_seconds(med_ms) if attr else None,
            )
        )
    return out


def credits(
    backend: ClickHouseBackend,
    project: str,
    start: datetime,
    end: datetime,
    dimension: Dimension = "link_id",
) -> list[CreditLine]:
    column = _DIMENSION_COLUMNS[dimension]  # whitelist: never a value from the request
    sql = MODELS_SQL.format(column=column, period=_PERIOD)
    params = {"project": project, "start": _ts(start), "end": _ts(end)}
    return [
        CreditLine(
            goal_id=str(g),
            model=str(m),
            dimension=str(d),
            credit=round(float(c), 6),
            revenue=round(float(r), 4),
        )
        for g, m, d, c, r in backend.query(sql, params)
    ]


def variations(
    backend: ClickHouseBackend, project: str, start: datetime, end: datetime
) -> list[VariationLine]:
    params = {"project": project, "start": _ts(start), "end": _ts(end)}
    lines: dict[tuple[str, str], VariationLine] = {}
    for e, v, n in backend.query(EXPOSURES_SQL, params):
        lines[(str(e), str(v))] = VariationLine(
            experiment_id=str(e), variation_id=str(v), exposures=int(n), conversions={}, revenue={}
        )
    for e, v, g, n, r in backend.query(VARIATION_CONVERSIONS_SQL, params):
        line = lines.setdefault(
            (str(e), str(v)),
            VariationLine(experiment_id=str(e), variation_id=str(v), exposures=0, conversions={}, revenue={}),
        )
        line.conversions[str(g)] = int(n)
        line.revenue[str(g)] = round(float(r), 4)
    return [lines[k] for k in sorted(lines)]


def sessions(backend: ClickHouseBackend, project: str, start: datetime, end: datetime) -> SessionsLine:
    params = {"project": project, "start": _ts(start), "end": _ts(end)}
    n, ev, vis = backend.query(SESSIONS_SQL, params)[0]
    return SessionsLine(sessions=int(n), events=int(ev or 0), visitors=int(vis))


def processing_report(
    backend: ClickHouseBackend,
    project: str,
    start: datetime,
    end: datetime,
    dimension: Dimension = "link_id",
) -> ProcessingReport:
    return ProcessingReport(
        project=project,
        goals=goals(backend, project, start, end),
        credits=credits(backend, project, start, end, dimension),
        variations=variations(backend, project, start, end),
        sessions=sessions(backend, project, start, end),
    )
