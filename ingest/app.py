"""The aiohttp edge application: middleware, routes, and the sender created once in cleanup_ctx.

Route modules (``routes_*.py``) hold the handlers; handlers only parse, validate and hand off.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ingest.accumulator import RecordAccumulator
from ingest.config import EdgeConfig
from ingest.http_common import CONFIG, METRICS, READY, REPORTS, SENDER, EdgeMetrics
from ingest.middleware import error_middleware
from ingest.partitioner import partition_for
from ingest.publisher import Publisher
from ingest.routes_ops import add_ops_routes
from ingest.routes_reports import add_report_routes
from ingest.routes_track import add_track_routes
from ingest.sender import EdgeSender
from schemas.reports import ReportSource

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def build_edge_app(
    config: EdgeConfig,
    publisher_factory: Callable[[], Publisher],
    reports: ReportSource | None = None,
    extra_cleanup: list[CleanupCtx] | None = None,
) -> web.Application:
    """The edge application. ``publisher_factory`` is called once at start-up (in cleanup_ctx), after the
    ``extra_cleanup`` contexts have started (and they stop after it)."""
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware])
    app[CONFIG] = config
    if reports is not None:
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
    add_track_routes(app)
    add_report_routes(app)
    add_ops_routes(app)
    return app
