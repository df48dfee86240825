"""Report endpoints: check the reader's key, validate the parameters, ask the ReportSource, answer JSON (or
CSV: ``?format=csv``). Who may read which project: ingest/http/auth.py."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ingest.errors import Rejected, bad_request
from ingest.http.api import Answer, Endpoint, Handler, Param, query_names, register
from ingest.http.auth import Grant, require_project, require_read
from ingest.http.common import REPORTS
from ingest.read.csv_export import FORMATS, report_response, requested_format
from schemas.reports import (
    ConversionAnalytics,
    ConversionAnalyticsQuery,
    ExperimentReport,
    ExperimentReportQuery,
    GoalConversionsRow,
    ProjectRow,
    ProjectsQuery,
    ProjectsReport,
    ReportSource,
    TopEventRow,
    TopEventsQuery,
    TopEventsReport,
    VariationRow,
)


def first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        return f"{loc}: {err['msg']}" if loc else str(err["msg"])
    return str(exc)


def report_source(request: web.Request) -> ReportSource:
    source = request.app.get(REPORTS)
    if source is None:
        raise Rejected(501, "reports_disabled", "this edge has no ClickHouse configured for reports")
    return source


def report_params(
    request: web.Request, model: type[BaseModel], from_path: str = ""
) -> tuple[dict[str, str], str]:
    """The query parameters without ``format``, and the requested format; names that are not fields of
    the query ``model`` (or the one ``from_path`` fills) are a 400."""
    allowed = query_names(model) - {from_path}
    params = dict(request.rel_url.query)
    fmt = requested_format(params.pop("format", None))
    unknown = set(params) - allowed
    if unknown:
        raise bad_request("invalid_query", f"unknown parameter(s): {', '.join(sorted(unknown))}")
    return params, fmt


Q = TypeVar("Q", bound=BaseModel)


def read_query(
    request: web.Request, model: type[Q], path_field: str = ""
) -> tuple[Grant, ReportSource, Q, str]:
    """What every report handler starts with: the reader's grant, the report source, the validated query
    (``path_field`` filled from the path's ``{id}``) and the requested format. Bad parameters are a 400."""
    grant = require_read(request)
    source = report_source(request)
    params, fmt = report_params(request, model, path_field)
    if path_field:
        params = {**params, path_field: request.match_info["id"]}
    try:
        query = model.model_validate(params)
        period = getattr(query, "period", None)
        if period is not None:
            period()  # a period that cannot be is a 400 too
    except (ValidationError, ValueError) as exc:
        raise bad_request("invalid_query", first_problem(exc)) from None
    return grant, source, query, fmt


async def top_events(request: web.Request) -> web.Response:
    grant, source, query, fmt = read_query(request, TopEventsQuery)
    require_project(grant, query.project)
    report = await source.top_events(query)
    return report_response(fmt, report, report.rows, TopEventRow, f"top-events-{query.project}")


async def projects(request: web.Request) -> web.Response:
    """The projects with events; for a read key only its own."""
    grant, source, query, fmt = read_query(request, ProjectsQuery)
    report = await source.projects(query, None if grant.admin else grant.projects)
    return report_response(fmt, report, report.rows, ProjectRow, "projects")


async def conversion_analytics(request: web.Request) -> web.Response:
    """PVTLNK: ``GET /api/v1/analytics/conversions?link_id=&days=30``."""
    grant, source, query, fmt = read_query(request, ConversionAnalyticsQuery)
    if query.project is None and not grant.admin:
        raise Rejected(403, "forbidden", "this key reads only its own projects: add &project=<project>")
    if query.project is not None:
        require_project(grant, query.project)
    report = await source.conversion_analytics(query)
    return report_response(fmt, report, report.rows, GoalConversionsRow, f"conversions-{query.link_id}")


async def experiment_report(request: web.Request) -> web.Response:
    grant, source, query, fmt = read_query(request, ExperimentReportQuery, "experiment")
    require_project(grant, query.project)
    report = await source.experiment_report(query)
    return report_response(fmt, report, report.rows, VariationRow, f"experiment-{query.experiment}")


FORMAT = Param(
    "format", "json (default) or csv (the rows, RFC 4180)", {"type": "string", "enum": list(FORMATS)}
)


def _report(
    path: str,
    handler: Handler,
    summary: str,
    model: type[BaseModel],
    query: type[BaseModel],
    *params: Param,
    from_path: tuple[str, ...] = (),
) -> Endpoint:
    return Endpoint(
        "GET",
        (path,),
        handler,
        summary,
        "reports",
        Answer(200, "the report (format=csv: its rows)", model, also=("text/csv",)),
        (400, 501, 503),
        auth="read",
        query_model=query,
        from_path=from_path,
        params=(*params, FORMAT),
    )


ENDPOINTS = (
    _report(
        "/api/v1/reports/top-events",
        top_events,
        "Top goals of a project by conversions (at most one filter)",
        TopEventsReport,
        TopEventsQuery,
    ),
    _report(
        "/api/v1/projects",
        projects,
        "Projects with events, most recently active first",
        ProjectsReport,
        ProjectsQuery,
    ),
    _report(
        "/api/v1/analytics/conversions",
        conversion_analytics,
        "PVTLNK conversion metrics of a link over the last days",
        ConversionAnalytics,
        ConversionAnalyticsQuery,
    ),
    _report(
        "/api/v1/experiments/{id}/report",
        experiment_report,
        "Per variation exposures, conversions, rate, revenue, difference to the baseline",
        ExperimentReport,
        ExperimentReportQuery,
        Param("id", "experiment id", where="path"),
        from_path=("experiment",),
    ),
)


def add_report_routes(app: web.Application) -> None:
    register(app, ENDPOINTS)
