"""Shared pieces of the edge's HTTP layer: app keys, metrics and JSON answers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ingest.config.edge import EdgeConfig
from ingest.formats import convert_fast
from ingest.http.keys import AccessKeys
from ingest.http.ratelimit import RateLimiter
from ingest.produce.switching import SwitchingSender
from schemas.config import ConfigStore
from schemas.outbound.config import OutboundConfig
from schemas.outbound.deliveries import DeliveryControl
from schemas.reports import ReportSource


class _ConvertPaths(Collector):
    """How the ``/track`` hot path serves (ingest/formats/convert_fast.py), read at scrape time."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        paths = CounterMetricFamily(
            "trackpipe_edge_convert_requests",
            "Convert tracking requests by the path that served them: fast, or the reference wire models",
            labels=["path"],
        )
        for path in ("fast", "reference"):
            paths.add_metric([path], convert_fast.PATHS[path])
        yield paths
        yield GaugeMetricFamily(
            "trackpipe_edge_convert_fast_layout_exact",
            "1: the hot path writes canonical Event JSON itself; 0: the layout changed, models serialize",
            value=1 if convert_fast.LAYOUT_EXACT else 0,
        )


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_ConvertPaths())
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
SENDER = web.AppKey("sender", SwitchingSender)
REPORTS = web.AppKey("reports", ReportSource)
METRICS = web.AppKey("metrics", EdgeMetrics)
READY = web.AppKey("ready", dict)
CONFIG_STORE = web.AppKey("config_store", ConfigStore)
OUTBOUND = web.AppKey("outbound", OutboundConfig)  # SSRF allow-list and secret grace (issue 13)
#: Acts on outbound deliveries (manual retry): given by the wiring; without it those routes answer 503.
DELIVERIES = web.AppKey("deliveries", DeliveryControl)
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
