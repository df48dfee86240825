"""Report endpoints: validate the parameters, ask the ReportSource, answer JSON."""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from ingest.errors import Rejected, bad_request
from ingest.http_common import REPORTS
from schemas.reports import TopEventsQuery


def first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        return f"{loc}: {err['msg']}" if loc else str(err["msg"])
    return str(exc)


async def top_events(request: web.Request) -> web.Response:
    source = request.app.get(REPORTS)
    if source is None:
        raise Rejected(501, "reports_disabled", "this edge has no ClickHouse configured for reports")
    params = dict(request.rel_url.query)
    unknown = set(params) - {"project", "from", "to", "limit"}
    if unknown:
        raise bad_request("invalid_query", f"unknown parameter(s): {', '.join(sorted(unknown))}")
    try:
        query = TopEventsQuery.model_validate(params)
        query.period()
    except (ValidationError, ValueError) as exc:
        raise bad_request("invalid_query", first_problem(exc)) from None
    report = await source.top_events(query)
    return web.Response(body=report.model_dump_json(by_alias=True), content_type="application/json")


def add_report_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/reports/top-events", top_events)
