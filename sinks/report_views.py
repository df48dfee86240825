"""The dashboard's further report queries (issue 17): the pickers' lists, the time series of a Top-5 view and
a link's click -> conversion delay histogram. Kept apart from sinks/reports.py (the Top-5 internals).

As there, parameters are bound server-side ({name:Type}); the only SQL that varies is picked from fixed
texts (by list kind, rate base and interval), assembled when this module is imported, never from a
request's values. Revenue is converted as the Top-5's is (sinks/fx.py via ``group_money``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.report_views import (
    DELAY_BOUNDS_S,
    LIST_COUNTS,
    DelayHistogram,
    DelayQuery,
    DelayRow,
    Interval,
    ListKind,
    ListQuery,
    ListReport,
    ListRow,
    SeriesQuery,
    SeriesReport,
    SeriesRow,
)
from schemas.reports import RateBase
from sinks.backend import ClickHouseBackend
from sinks.fx import Money, project_currency
from sinks.report_common import (
    CONVERSION_FILTERS,
    CONVERSIONS_SOURCE,
    EXPERIMENT_SOURCE,
    MONEY,
    PERIOD,
    group_money,
    parts_sql,
    rate,
    report_filters,
    ts,
)

_IN_PROJECT = "project_id = {project:String} AND " + PERIOD

# -- the pickers' lists ---------------------------------------------------------------------------------

_CAMPAIGN = "if(seg_campaign != '', seg_campaign, attributes['utm_campaign'])"
#: kind -> (the key in events_raw, what is counted there, the rows counted, the conversions' column)
_LISTED: dict[str, tuple[str, str, str, str]] = {
    "pushes": (
        "push_hash",
        "uniqExact(event_id)",
        "type = 'push_open' AND push_hash != ''",
        "attributed_push_hash",
    ),
    "campaigns": (_CAMPAIGN, "uniqExact(visitor_id)", f"{_CAMPAIGN} != ''", "attributed_campaign"),
    "links": ("link_id", "uniqExact(event_id)", "type = 'click' AND link_id != ''", "attributed_link_id"),
}
_LIST_SQL = """
SELECT k, sum(n) AS counted, sum(c) AS converted
FROM (
    SELECT __KEY__ AS k, toUInt64(__COUNT__) AS n, toUInt64(0) AS c
    FROM events_raw WHERE __IN_PROJECT__ AND __WHERE__
    GROUP BY k
    UNION ALL
    SELECT __CONVERTED__ AS k, toUInt64(0) AS n, toUInt64(count()) AS c
    FROM conversions FINAL WHERE __IN_PROJECT__ AND is_deleted = 0 AND __CONVERTED__ != ''
    GROUP BY k
)
GROUP BY k
ORDER BY counted DESC, converted DESC, k ASC
LIMIT {limit:UInt32}
"""
LIST_SQL: dict[str, str] = {
    kind: _LIST_SQL.replace("__KEY__", key)
    .replace("__COUNT__", count)
    .replace("__WHERE__", where)
    .replace("__CONVERTED__", converted)
    .replace("__IN_PROJECT__", _IN_PROJECT)
    for kind, (key, count, where, converted) in _LISTED.items()
}
LIST_SQL["experiments"] = """
SELECT e, v, sum(n) AS counted, sum(c) AS converted
FROM (
    SELECT experiment_id AS e, variation_id AS v, toUInt64(uniqExact(visitor_id)) AS n, toUInt64(0) AS c
    FROM variation_exposures FINAL
    WHERE project_id = {project:String}
      AND first_seen_at >= {start:DateTime64(3, 'UTC')} AND first_seen_at < {end:DateTime64(3, 'UTC')}
    GROUP BY e, v
    UNION ALL
    SELECT experiment_ids[i] AS e, variation_ids[i] AS v, toUInt64(0) AS n, toUInt64(count()) AS c
    FROM conversions FINAL ARRAY JOIN arrayEnumerate(experiment_ids) AS i  -- sizes may differ: by index
    WHERE __IN_PROJECT__ AND is_deleted = 0
    GROUP BY e, v
)
GROUP BY e, v
ORDER BY e ASC, v ASC
LIMIT {limit:UInt32}
""".replace("__IN_PROJECT__", _IN_PROJECT)


def report_list(backend: ClickHouseBackend, kind: ListKind, query: ListQuery) -> ListReport:
    start, end = query.period()
    params = {"project": query.project, "start": ts(start), "end": ts(end), "limit": query.limit}
    found = backend.query(LIST_SQL[kind], params)
    if kind == "experiments":
        rows = [
            ListRow(id=str(e), variation=str(v), count=int(n), conversions=int(c)) for e, v, n, c in found
        ]
    else:
        rows = [ListRow(id=str(k), count=int(n), conversions=int(c)) for k, n, c in found]
    return ListReport(
        project=query.project, kind=kind, count_of=LIST_COUNTS[kind], from_=start, to=end, rows=rows
    )


# -- the time series ------------------------------------------------------------------------------------

#: The start of each bucket as text ('YYYY-MM-DD hh:mm:ss'), from a DateTime64 column.
_BUCKET: dict[Interval, str] = {
    "hour": "formatDateTime(__COL__, '%Y-%m-%d %H:00:00', 'UTC')",
    "day": "formatDateTime(__COL__, '%Y-%m-%d 00:00:00', 'UTC')",
}
_GOAL = " AND ({goal:String} = '' OR goal_id = {goal:String}) "
_SERIES_SOURCES: dict[RateBase, str] = {
    **{base: CONVERSIONS_SOURCE + f + _GOAL for base, f in CONVERSION_FILTERS.items()},
    "exposed_visitors": EXPERIMENT_SOURCE + _GOAL,
}
_SERIES = f"""
SELECT __BUCKET__ AS bucket, count() AS conversions, uniqExact(visitor_hash) AS converters, {MONEY}
FROM __SOURCE__
GROUP BY bucket
"""
#: The rate base per bucket (the same rows the Top-5's base counts, per hour or day).
_BASE_PER_BUCKET: dict[RateBase, str] = {
    "visitors": "SELECT __BUCKET__ AS b, uniqExact(visitor_id) FROM events_raw WHERE __IN__ GROUP BY b",
    "campaign_visitors": """
SELECT __BUCKET__ AS b, uniqExact(visitor_id) FROM events_raw WHERE __IN__
  AND (seg_campaign = {campaign:String}
       OR (seg_campaign = '' AND attributes['utm_campaign'] = {campaign:String}))
GROUP BY b""",
    "clicks": """
SELECT __BUCKET__ AS b, uniqExact(event_id) FROM events_raw
WHERE __IN__ AND type = 'click' AND link_id = {link:String} GROUP BY b""",
    "push_opens": """
SELECT __BUCKET__ AS b, uniqExact(event_id) FROM events_raw
WHERE __IN__ AND type = 'push_open' AND push_hash = {push:String} GROUP BY b""",
    "exposed_visitors": """
SELECT __BUCKET__ AS b, count() FROM (
    SELECT visitor_id, min(first_seen_at) AS seen_at
    FROM variation_exposures FINAL
    WHERE project_id = {project:String} AND experiment_id = {experiment:String}
      AND variation_id = {variation:String}
      AND first_seen_at >= {start:DateTime64(3, 'UTC')} AND first_seen_at < {end:DateTime64(3, 'UTC')}
    GROUP BY visitor_id
) GROUP BY b""",
}


def _bucket(interval: Interval, column: str) -> str:
    return _BUCKET[interval].replace("__COL__", column)


SERIES_SQL: dict[tuple[RateBase, Interval], str] = {}
SERIES_PARTS_SQL: dict[tuple[RateBase, Interval], str] = {}
SERIES_BASE_SQL: dict[tuple[RateBase, Interval], str] = {}
for _base, _source in _SERIES_SOURCES.items():
    for _interval in _BUCKET:
        _key = (_base, _interval)
        _group = _bucket(_interval, "occurred_at")
        SERIES_SQL[_key] = _SERIES.replace("__BUCKET__", _group).replace("__SOURCE__", _source)
        SERIES_PARTS_SQL[_key] = parts_sql(_group, _source)
        _seen = "seen_at" if _base == "exposed_visitors" else "occurred_at"
        SERIES_BASE_SQL[_key] = (
            _BASE_PER_BUCKET[_base]
            .replace("__BUCKET__", _bucket(_interval, _seen))
            .replace("__IN__", _IN_PROJECT)
        )

_STEP: dict[Interval, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def buckets(interval: Interval, start: datetime, end: datetime) -> list[datetime]:
    """The starts of the hours or days that meet [start, end), in order."""
    first = start.replace(minute=0, second=0, microsecond=0)
    if interval == "day":
        first = first.replace(hour=0)
    out = []
    at = first
    while at < end:
        out.append(at)
        at += _STEP[interval]
    return out


def _at(text: object) -> datetime:
    return datetime.strptime(str(text)[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def series(backend: ClickHouseBackend, query: SeriesQuery, now: datetime | None = None) -> SeriesReport:
    start, end = query.period(now)
    base = query.rate_base
    filters = report_filters(query)
    params: dict[str, Any] = {
        "project": query.project,
        "start": ts(start),
        "end": ts(end),
        "goal": query.goal or "",
        **filters,
    }
    key = (base, query.interval)
    found = [(str(b), int(n), int(u), r, cs) for b, n, u, r, cs in backend.query(SERIES_SQL[key], params)]
    base_of = {_at(b): int(n) for b, n in backend.query(SERIES_BASE_SQL[key], params)}
    target = query.currency or project_currency(backend, query.project)
    money = group_money(
        backend, target, [(b, r, cs) for b, _, _, r, cs in found], SERIES_PARTS_SQL[key], params
    )
    per_conversion = base in ("clicks", "push_opens")
    by_at = {_at(b): (n, u, money[b]) for b, n, u, _, _ in found}
    total = Money(target)
    rows = []
    for at in buckets(query.interval, start, end):
        n, u, m = by_at.get(at, (0, 0, None))
        if m is not None:
            total.merge(m)
        base_n = base_of.get(at, 0)
        rows.append(
            SeriesRow(
                at=at,
                conversions=n,
                converters=u,
                revenue=m.value if m is not None else 0.0,
                base_count=base_n,
                conversion_rate=rate(n if per_conversion else u, base_n),
            )
        )
    return SeriesReport(
        project=query.project,
        from_=start,
        to=end,
        interval=query.interval,
        goal=query.goal,
        filter=filters,
        rate_base=base,
        currency=total.target,
        unconverted_conversions=total.unconverted,
        rows=rows,
    )


# -- a link's click -> conversion delays ----------------------------------------------------------------

DELAYS_SQL = f"""
SELECT arrayFirstIndex(b -> time_to_convert_ms < b, {{bounds:Array(Int64)}}) AS bin, count()
FROM conversions FINAL
WHERE ({{project:String}} = '' OR project_id = {{project:String}}) AND {PERIOD}
  AND is_deleted = 0 AND attributed_link_id = {{link:String}} AND time_to_convert_ms IS NOT NULL
GROUP BY bin
"""


def delays(backend: ClickHouseBackend, query: DelayQuery, now: datetime | None = None) -> DelayHistogram:
    start, end = query.period(now)
    params = {
        "project": query.project or "",
        "link": query.link_id,
        "start": ts(start),
        "end": ts(end),
        "bounds": [s * 1000 for s in DELAY_BOUNDS_S],
    }
    # arrayFirstIndex: 1 for the first bin, ..., 0 past the last bound (the open bin)
    per_bin = {int(b): int(n) for b, n in backend.query(DELAYS_SQL, params)}
    lows = (0, *DELAY_BOUNDS_S)
    highs: tuple[int | None, ...] = (*DELAY_BOUNDS_S, None)
    rows = [
        DelayRow(from_s=lo, to_s=hi, conversions=per_bin.get(i + 1 if hi is not None else 0, 0))
        for i, (lo, hi) in enumerate(zip(lows, highs, strict=True))
    ]
    return DelayHistogram(
        link_id=query.link_id,
        project=query.project,
        days=query.days,
        from_=start,
        to=end,
        timed_conversions=sum(r.conversions for r in rows),
        rows=rows,
    )
