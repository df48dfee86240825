"""Operational endpoints: readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.http_common import METRICS, READY, json_response


async def healthz(request: web.Request) -> web.Response:
    state = request.app[READY]
    if not state.get("ready"):
        return json_response({"status": "starting"}, status=503)
    return json_response({"status": "ok", **{k: v for k, v in state.items() if k != "ready"}})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_ops_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
