"""Shared pieces of the edge's HTTP layer: app keys, metrics and JSON answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from ingest.config import EdgeConfig
from ingest.keys import AccessKeys
from ingest.ratelimit import RateLimiter
from ingest.sender import EdgeSender
from schemas.config import ConfigStore
from schemas.reports import ReportSource


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "trackpipe_edge_events_accepted", "events durably accepted", ["format"], registry=self.registry
        )
        self.rejected = Counter(
            "trackpipe_edge_requests_rejected", "requests answered 4xx/5xx", ["code"], registry=self.registry
        )
        self.pixel_rejected = Counter(
            "trackpipe_edge_pixel_rejected",
            "conversion pixels answered with the GIF but not recorded",
            ["reason"],
            registry=self.registry,
        )
        self._accepted_by_format: dict[str, Any] = {}

    def accepted_events(self, fmt: str, count: int) -> None:
        """``accepted.labels(fmt).inc(count)``, with the labelled child looked up once per format."""
        child = self._accepted_by_format.get(fmt)
        if child is None:
            child = self._accepted_by_format[fmt] = self.accepted.labels(fmt)
        child.inc(count)


CONFIG = web.AppKey("config", EdgeConfig)
SENDER = web.AppKey("sender", EdgeSender)
REPORTS = web.AppKey("reports", ReportSource)
METRICS = web.AppKey("metrics", EdgeMetrics)
READY = web.AppKey("ready", dict)
CONFIG_STORE = web.AppKey("config_store", ConfigStore)
ACCESS = web.AppKey("access", AccessKeys)  # the configured admin / read / metrics keys
#: Failed authentications per client IP (429 once over the limit, whatever key is presented then).
AUTH_FAILURES = web.AppKey("auth_failures", RateLimiter)
LIMITER = web.AppKey("rate_limiter", RateLimiter)
#: What ``/healthz`` asks besides start-up: each check returns None when fine, else why the service cannot
#: do its job right now (the publisher's own ``health()`` is asked too, when it has one).
HEALTH_CHECKS = web.AppKey("health_checks", list[Callable[[], "str | None"]])


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)
