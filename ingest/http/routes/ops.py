"""Operational endpoints: readiness and Prometheus metrics.

``/healthz`` tells the truth: 200 only when the edge has started and every health check (the publisher's
own ``health()``, the embedded runner's, ...) says it can do its job now; otherwise 503 with each problem
named, so a load balancer stops sending traffic and an operator sees why.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.http.answers import Health
from ingest.http.api import Answer, Endpoint
from ingest.http.auth import require_metrics
from ingest.http.common import HEALTH_CHECKS, METRICS, READY, SENDER, json_response

HealthCheck = Callable[[], "str | None"]


def health_problems(app: web.Application) -> list[str]:
    checks: list[HealthCheck] = []
    if HEALTH_CHECKS in app:
        registered = app[HEALTH_CHECKS]
        checks.extend(registered)
    sender = app.get(SENDER)
    if sender is not None:
        checks.append(sender.publisher_health)
    return [problem for check in checks if (problem := check()) is not None]


async def healthz(request: web.Request) -> web.Response:
    state = request.app[READY]
    if not state.get("ready"):
        return json_response({"status": "starting"}, status=503, headers={"Retry-After": "1"})
    details = {k: v for k, v in state.items() if k != "ready"}
    problems = health_problems(request.app)
    if problems:
        return json_response(
            {"status": "unavailable", "problems": problems, **details},
            status=503,
            headers={"Retry-After": "1"},
        )
    return json_response({"status": "ok", **details})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; needs TRACKPIPE_METRICS_KEY or the admin key as a bearer key (with neither
    configured: loopback clients only)."""
    require_metrics(request)
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


ENDPOINTS = (
    Endpoint(
        "GET",
        ("/healthz",),
        healthz,
        "Readiness: 200 only when started and every health check is fine",
        "ops",
        Answer(200, "ready", Health),
        other=(
            Answer(
                503,
                "starting, or unavailable: the problems named",
                Health,
                headers=(("Retry-After", "seconds"),),
            ),
        ),
    ),
    Endpoint(
        "GET",
        ("/metrics",),
        metrics,
        "Prometheus metrics (TRACKPIPE_METRICS_KEY or the admin key)",
        "ops",
        Answer(200, "metrics", schema={"type": "string"}, media_type="text/plain"),
        auth="metrics",
    ),
)
