"""The aiohttp edge: routes, error middleware, and long-lived clients created once in cleanup_ctx.

Handlers only parse, validate and hand off (to the sender, or to a report provider).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import ValidationError

from ingest.accumulator import RecordAccumulator
from ingest.config import EdgeConfig
from ingest.context import RequestContext
from ingest.convert_legacy import is_legacy_query, parse_legacy_query
from ingest.convert_tracking import parse_convert_payload
from ingest.errors import Rejected, bad_request
from ingest.partitioner import partition_for
from ingest.phpquery import parse_bracket_query
from ingest.publisher import Publisher, PublishError
from ingest.sender import EdgeSender
from schemas.events import Event
from schemas.reports import TopEventsProvider, TopEventsQuery

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", EdgeConfig)
SENDER = web.AppKey("sender", EdgeSender)
REPORTS = web.AppKey("reports", object)
METRICS = web.AppKey("metrics", object)
READY = web.AppKey("ready", dict)


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "trackpipe_edge_events_accepted", "events durably accepted", ["format"], registry=self.registry
        )
        self.rejected = Counter(
            "trackpipe_edge_requests_rejected", "requests answered 4xx/5xx", ["code"], registry=self.registry
        )


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    metrics: EdgeMetrics = request.app[METRICS]  # type: ignore[assignment]
    try:
        return await handler(request)
    except Rejected as exc:
        metrics.rejected.labels(exc.code).inc()
        headers = {"Retry-After": "1"} if exc.retriable else None
        return json_response(exc.body(), status=exc.status, headers=headers)
    except PublishError as exc:
        metrics.rejected.labels("not_durable").inc()
        return json_response(
            {"error": {"code": "not_durable", "message": f"events not stored, retry: {exc}"}},
            status=503,
            headers={"Retry-After": "1"},
        )
    except web.HTTPRequestEntityTooLarge:
        metrics.rejected.labels("payload_too_large").inc()
        return _error(
            413, "payload_too_large", f"body larger than {request.app[CONFIG].max_body_bytes} bytes"
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        metrics.rejected.labels(code).inc()
        return _error(exc.status, code, f"{exc.reason}: {request.method} {request.path}")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        metrics.rejected.labels("internal").inc()
        return _error(500, "internal", "internal error; nothing was accepted from this request")


def _context(request: web.Request) -> RequestContext:
    ua = request.headers.get("User-Agent", "").strip()
    if not ua:
        raise bad_request("missing_user_agent", "a User-Agent header with a value is required")
    cfg = request.app[CONFIG]
    ip = request.remote
    if cfg.trust_forwarded_for and (fwd := request.headers.get("X-Forwarded-For")):
        ip = fwd.split(",")[0].strip()
    return RequestContext(received_at=datetime.now(UTC), client_ip=ip, user_agent=ua[:512])


async def _accept(request: web.Request, events: list[Event], fmt: str) -> web.Response:
    await request.app[SENDER].submit(events)
    request.app[METRICS].accepted.labels(fmt).inc(len(events))  # type: ignore[attr-defined]
    return json_response({"status": "ok", "accepted": len(events), "event_ids": [e.event_id for e in events]})


async def track_post(request: web.Request) -> web.Response:
    ctx = _context(request)
    cfg = request.app[CONFIG]
    raw = await request.read()
    if not raw:
        raise bad_request("invalid_body", "empty body: a JSON object with cid, pid, vid and ev is expected")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request("invalid_json", f"body is not valid JSON: {exc}") from None
    events = parse_convert_payload(
        data, ctx, source_format="convert_json", max_events=cfg.max_events_per_request
    )
    return await _accept(request, events, "convert_json")


async def track_get(request: web.Request) -> web.Response:
    ctx = _context(request)
    cfg = request.app[CONFIG]
    query = request.rel_url.query
    if is_legacy_query(query):
        events = parse_legacy_query(query, ctx)
        return await _accept(request, events, "convert_legacy")
    if len(query) > 20 * cfg.max_events_per_request:
        raise bad_request("invalid_query", "too many query parameters")
    data = parse_bracket_query(query.items())
    events = parse_convert_payload(
        data, ctx, source_format="convert_query", max_events=cfg.max_events_per_request
    )
    return await _accept(request, events, "convert_query")


async def healthz(request: web.Request) -> web.Response:
    state = request.app[READY]
    if not state.get("ready"):
        return json_response({"status": "starting"}, status=503)
    return json_response({"status": "ok", **{k: v for k, v in state.items() if k != "ready"}})


async def metrics_handler(request: web.Request) -> web.Response:
    registry = request.app[METRICS].registry  # type: ignore[attr-defined]
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def top_events(request: web.Request) -> web.Response:
    provider: TopEventsProvider | None = request.app[REPORTS]  # type: ignore[assignment]
    if provider is None:
        raise Rejected(501, "reports_disabled", "this edge has no ClickHouse configured for reports")
    params = dict(request.rel_url.query)
    unknown = set(params) - {"project", "from", "to", "limit"}
    if unknown:
        raise bad_request("invalid_query", f"unknown parameter(s): {', '.join(sorted(unknown))}")
    try:
        query = TopEventsQuery.model_validate(params)
        query.period()
    except (ValidationError, ValueError) as exc:
        raise bad_request("invalid_query", _first_problem(exc)) from None
    report = await provider(query)
    return web.Response(body=report.model_dump_json(by_alias=True), content_type="application/json")


def _first_problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        return f"{loc}: {err['msg']}" if loc else str(err["msg"])
    return str(exc)


def build_edge_app(
    config: EdgeConfig,
    publisher_factory: Callable[[], Publisher],
    reports: TopEventsProvider | None = None,
    extra_cleanup: list[Callable[[web.Application], AsyncIterator[None]]] | None = None,
) -> web.Application:
    """The edge application. ``publisher_factory`` is called once at start-up (in cleanup_ctx)."""
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware])
    app[CONFIG] = config
    app[REPORTS] = reports
    app[METRICS] = EdgeMetrics()
    app[READY] = {"ready": False}

    for ctx in extra_cleanup or []:
        app.cleanup_ctx.append(ctx)

    async def sender_ctx(app: web.Application) -> AsyncIterator[None]:
        publisher = publisher_factory()
        await publisher.start()
        acc = RecordAccumulator(
            publisher.partitions,
            partition_for,
            max_events_per_record=config.max_events_per_record,
            max_record_bytes=config.max_record_bytes,
        )
        sender = EdgeSender(
            acc, publisher, linger_ms=config.linger_ms, max_buffered_events=config.max_buffered_events
        )
        await sender.start()
        app[SENDER] = sender
        app[READY].update(ready=True, partitions=publisher.partitions)
        try:
            yield
        finally:
            app[READY]["ready"] = False
            await sender.stop()
            await publisher.stop()

    app.cleanup_ctx.append(sender_ctx)
    for path in ("/track", "/track/"):
        app.router.add_post(path, track_post)
        app.router.add_get(path, track_get)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/api/v1/reports/top-events", top_events)
    return app
