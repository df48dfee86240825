"""The dashboard's further report endpoints (issue 17), JSON or ``?format=csv`` like the other reports:

- ``GET /api/v1/reports/{pushes,campaigns,links,experiments}?project=``: the pickers' lists with counts;
- ``GET /api/v1/reports/series?project=&interval=hour|day&goal=`` + the Top-5's filters: per hour or day;
- ``GET /api/v1/analytics/conversions/delays?link_id=``: a link's click -> conversion delay histogram.
"""

from __future__ import annotations

from typing import cast

from aiohttp import web

from ingest.errors import Rejected
from ingest.http.api import Endpoint, Handler, register
from ingest.http.auth import require_project
from ingest.read.csv_export import report_response
from ingest.read.reports import _report, read_query
from schemas.report_views import (
    DelayHistogram,
    DelayQuery,
    DelayRow,
    ListKind,
    ListQuery,
    ListReport,
    ListRow,
    SeriesQuery,
    SeriesReport,
    SeriesRow,
    ViewSource,
)


def _lister(kind: ListKind) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        grant, source, query, fmt = read_query(request, ListQuery)
        require_project(grant, query.project)
        report = await cast(ViewSource, source).report_list(kind, query)
        return report_response(fmt, report, report.rows, ListRow, f"{kind}-{query.project}")

    handler.__name__ = f"list_{kind}"
    return handler


async def series(request: web.Request) -> web.Response:
    grant, source, query, fmt = read_query(request, SeriesQuery)
    require_project(grant, query.project)
    report = await cast(ViewSource, source).series(query)
    return report_response(fmt, report, report.rows, SeriesRow, f"series-{query.project}")


async def delays(request: web.Request) -> web.Response:
    grant, source, query, fmt = read_query(request, DelayQuery)
    if query.project is None and not grant.admin:
        raise Rejected(403, "forbidden", "this key reads only its own projects: add &project=<project>")
    if query.project is not None:
        require_project(grant, query.project)
    report = await cast(ViewSource, source).delays(query)
    return report_response(fmt, report, report.rows, DelayRow, f"delays-{query.link_id}")


_LISTS: dict[ListKind, str] = {
    "pushes": "Push messages opened in the period (count: opens), with their attributed conversions",
    "campaigns": "Campaigns seen in the period (count: visitors), with their attributed conversions",
    "links": "Tracking links clicked in the period (count: clicks), with their attributed conversions",
    "experiments": "Experiment variations (count: exposed visitors), with the conversions carrying them",
}

ENDPOINTS: tuple[Endpoint, ...] = (
    *(
        _report(f"/api/v1/reports/{kind}", _lister(kind), summary, ListReport, ListQuery)
        for kind, summary in _LISTS.items()
    ),
    _report(
        "/api/v1/reports/series",
        series,
        "Conversions, revenue and conversion rate per hour or day (a goal, the Top-5's filters)",
        SeriesReport,
        SeriesQuery,
    ),
    _report(
        "/api/v1/analytics/conversions/delays",
        delays,
        "Histogram of a link's click -> conversion delays over the last days",
        DelayHistogram,
        DelayQuery,
    ),
)


def add_report_view_routes(app: web.Application) -> None:
    register(app, ENDPOINTS)
