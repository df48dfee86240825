"""The aiohttp edge application: middleware, routes, and the sender created once in cleanup_ctx.

Route modules (``ingest/http/routes/``, ``ingest/read/``) hold the handlers and declare them in the route
table (``ENDPOINTS``, ingest/http/api.py) the routes are registered from and ``/openapi.json`` is built
from; handlers only parse, validate and hand off.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web

from ingest.config.edge import EdgeConfig
from ingest.http import openapi
from ingest.http.aiohttp_private import install_expect_handler
from ingest.http.api import check_documented, register
from ingest.http.common import (
    ACCESS,
    AUTH_FAILURES,
    CONFIG,
    CONFIG_STORE,
    DELIVERIES,
    HEALTH_CHECKS,
    LIMITER,
    METRICS,
    OUTBOUND,
    READY,
    REPORTS,
    SENDER,
    EdgeMetrics,
)
from ingest.http.forwarding import PROXIES, TrustedProxies
from ingest.http.keys import AccessKeys
from ingest.http.middleware import error_middleware, log_client_errors_at_info
from ingest.http.ratelimit import RateLimiter
from ingest.http.routes import admin, clicks, ops, postbacks, pushwoosh, pvtlnk, track
from ingest.http.routes import alerts as alert_routes
from ingest.http.routes import deliveries as delivery_routes
from ingest.http.routes import stream as stream_routes
from ingest.produce.accumulator import RecordAccumulator
from ingest.produce.publisher import Publisher
from ingest.produce.sender import EdgeSender
from ingest.produce.switching import SwitchingSender
from ingest.read import report_views as report_view_routes
from ingest.read import reports as report_routes
from ingest.read.dashboard import add_dashboard_routes
from schemas.alerts import AlertStates
from schemas.config import ConfigStore
from schemas.outbound.config import OutboundConfig
from schemas.outbound.deliveries import DeliveryControl
from schemas.partitioning import partition_for
from schemas.reports import ReportSource
from schemas.stream.source import StreamSource

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]

#: Net allocations of tracked objects between young-generation collections while the edge serves (the
#: default, 700, ran a collection every few requests).
GC_YOUNG_THRESHOLD = 10_000


_gc_users: list[tuple[int, int, int]] = []  # one entry per running edge app: the thresholds before it


def _tune_gc() -> None:
    """Once started: take what start-up built (~60k objects: modules, models, the app) out of the cyclic
    collector's reach, and collect the young generation less often. Requests make short-lived objects
    freed by reference counting; full collections walking the whole heap were ~25% of the edge's CPU
    under load (docs/performance.md)."""
    before = gc.get_threshold()
    _gc_users.append(before)
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(before[0], GC_YOUNG_THRESHOLD), before[1], before[2])


def _restore_gc() -> None:
    """On stop of the last running edge app (several may run in one process, e.g. in tests): everything
    frozen becomes collectable again and the thresholds are those from before the first one started."""
    first = _gc_users[0]
    _gc_users.pop()
    if not _gc_users:
        gc.unfreeze()
        gc.set_threshold(*first)


def build_edge_app(
    config: EdgeConfig,
    publisher_factory: Callable[[], Publisher],
    reports: ReportSource | None = None,
    extra_cleanup: list[CleanupCtx] | None = None,
    *,
    config_store: ConfigStore | None = None,
    admin_key: str | None = None,
    read_keys: Mapping[str, str] | None = None,
    metrics_key: str | None = None,
    health_checks: list[Callable[[], str | None]] | None = None,
    outbound: OutboundConfig | None = None,
    deliveries: DeliveryControl | None = None,
    stream: StreamSource | None = None,
    alert_states: AlertStates | None = None,
) -> web.Application:
    """The edge application. ``publisher_factory`` is called once at start-up (in cleanup_ctx), after the
    ``extra_cleanup`` contexts have started (and they stop after it). ``config_store`` (goals and links)
    is started after ``extra_cleanup`` and before the publisher; without it the click, postback and
    conversion endpoints answer 503. Without ``admin_key`` the admin API is disabled. ``read_keys``
    ({project: key}) read their projects' reports, the admin key every project's, ``metrics_key`` (or the
    admin key) ``/metrics``; with no such key, reports and metrics are served to loopback clients only
    (ingest/http/auth.py). Keys shorter than 32 characters are refused (ValueError). ``health_checks``
    are asked by ``/healthz`` (None: fine, else the problem). ``outbound``: the SSRF allow-list and
    signing-secret grace period used when goals and links are saved (default: public addresses only).
    ``deliveries``: acts on the outbound deliveries (manual retry); without it those routes answer 503.
    ``stream``: where ``/api/v1/stream`` reads the public conversion stream (without it: 503)."""
    access = AccessKeys(admin=admin_key or None, read=read_keys, metrics=metrics_key or None)
    log_client_errors_at_info()
    install_expect_handler()  # before any route is made: see ingest/http/aiohttp_private.py
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware])
    app[CONFIG] = config
    if reports is not None:
        app[REPORTS] = reports
    app[METRICS] = EdgeMetrics()
    app[READY] = {"ready": False}
    app[HEALTH_CHECKS] = list(health_checks or [])
    app[LIMITER] = RateLimiter(config.rate_limit_per_minute)
    app[ACCESS] = access
    app[AUTH_FAILURES] = RateLimiter(config.auth_failures_per_minute)
    app[PROXIES] = TrustedProxies(config.trusted_proxies)
    app[OUTBOUND] = outbound or OutboundConfig()
    if deliveries is not None:
        app[DELIVERIES] = deliveries
    if alert_states is not None:
        app[alert_routes.ALERT_STATES] = alert_states
    if stream is not None:
        app[stream_routes.STREAM] = stream
        app[stream_routes.CLOSING] = {"closing": False}
        app.on_shutdown.append(stream_routes.on_shutdown)

    for ctx in extra_cleanup or []:
        app.cleanup_ctx.append(ctx)

    if config_store is not None:
        store = app[CONFIG_STORE] = config_store

        async def config_ctx(app: web.Application) -> AsyncIterator[None]:
            await store.start()
            try:
                yield
            finally:
                await store.stop()

        app.cleanup_ctx.append(config_ctx)

    async def sender_ctx(app: web.Application) -> AsyncIterator[None]:
        publisher = publisher_factory()
        await publisher.start()

        def make_sender(pub: Publisher) -> EdgeSender:
            acc = RecordAccumulator(
                pub.partitions,
                partition_for,
                max_events_per_record=config.max_events_per_record,
                max_record_bytes=config.max_record_bytes,
            )
            return EdgeSender(
                acc,
                pub,
                linger_ms=config.linger_ms,
                max_buffered_events=config.max_buffered_events,
                delivery_timeout_s=config.delivery_timeout_s,
            )

        sender = SwitchingSender(make_sender, publisher)
        await sender.start()
        app[SENDER] = sender
        app[READY].update(ready=True, partitions=publisher.partitions)
        _tune_gc()
        try:
            yield
        finally:
            _restore_gc()
            app[READY]["ready"] = False
            await sender.stop()

    app.cleanup_ctx.append(sender_ctx)
    for endpoints in (
        track.ENDPOINTS,
        report_routes.ENDPOINTS,
        report_view_routes.ENDPOINTS,
        ops.ENDPOINTS,
        clicks.ENDPOINTS,
        postbacks.ENDPOINTS,
        pvtlnk.ENDPOINTS,
        pushwoosh.ENDPOINTS,
        admin.ENDPOINTS,
        alert_routes.ENDPOINTS,
        delivery_routes.ENDPOINTS,
        stream_routes.ENDPOINTS,
        openapi.ENDPOINTS,
    ):
        register(app, endpoints)
    add_dashboard_routes(app)
    check_documented(app)  # every route is in the table, so in /openapi.json
    return app
