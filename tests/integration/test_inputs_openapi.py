"""The running edge conforms to its own ``/openapi.json``: schemathesis generates requests for every
documented operation (a small, bounded number each) and checks status codes, content types, headers and
bodies against the document; real happy-path answers (302, 201, the pixel, ...) are checked the same way.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ingest.app import build_edge_app
from ingest.config.edge import EdgeConfig
from ingest.http.openapi import app_spec
from schemas.outbound.deliveries import EndpointsList
from schemas.reports import ReportSource
from schemas.stream.source import CursorError, StreamItem, StreamUnavailable
from sinks.migrate import migrate
from sinks.server_backend import ServerBackend
from tests.integration.test_inputs_edge import AUTH, REF_GOAL, inputs_app
from tests.scenario import free_port
from trackpipe.report_source import BackendReports

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


class NoDeliveries:
    """A delivery engine holding nothing: a retry changes nothing, no endpoint is failing."""

    async def retry(self, ids: Sequence[str]) -> int:
        return 0

    async def endpoints(self) -> EndpointsList:
        return EndpointsList(endpoints=[])

    async def reenable(self, key: str) -> bool:
        return False


class EndingStream:
    """An empty stream that ends after its first wait (so a generated request gets a whole answer);
    a cursor that is not a number is refused, as the embedded stream does."""

    async def latest(self, project: str) -> str | None:
        return None

    async def read(self, project: str, after: str | None, limit: int, wait_s: float) -> list[StreamItem]:
        if after is not None and not after.isdigit():
            raise CursorError(f"Last-Event-ID {after!r} is not a cursor of this stream")
        if wait_s > 0:
            raise StreamUnavailable("the test stream ends here")
        return []


class ServedEdge:
    """The edge (local log, file config store) served on a real port from a thread with its own loop."""

    def __init__(self, tmp: Path, reports: ReportSource):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # no rate limit: the generated cases of every admin operation together pass 1000 a minute
        self._app, _ = inputs_app(
            tmp,
            reports=reports,
            deliveries=NoDeliveries(),
            stream=EndingStream(),
            max_body_bytes=65536,
            rate_limit_per_minute=0,
        )
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self._app)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="openapi-edge", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(60), "edge did not start"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(60)
        self._loop.close()


@pytest.fixture(scope="module")
def served_edge(tmp_path_factory: pytest.TempPathFactory, clickhouse_server: Any) -> Iterator[ServedEdge]:
    """The edge with real reports: a fresh database on the real ClickHouse server."""
    database = f"test_openapi_{uuid.uuid4().hex}"
    clickhouse_server.http_query(f"CREATE DATABASE `{database}`")
    backend = ServerBackend(clickhouse_server.host, clickhouse_server.http_port, database)
    migrate(backend)
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="openapi-reports")
    edge = ServedEdge(tmp_path_factory.mktemp("openapi"), BackendReports(lambda: backend, executor))
    edge.start()
    try:
        yield edge
    finally:
        edge.stop()
        executor.shutdown(wait=True)
        backend.close()
        clickhouse_server.http_query(f"DROP DATABASE IF EXISTS `{database}` SYNC")


# The document is generated from the route table; it is loaded here (from an app that is never started)
# so schemathesis can generate one test per operation, and test_served_document_is_this_one checks that
# the running edge serves exactly this document.
SPEC = app_spec(build_edge_app(EdgeConfig(), lambda: None))  # type: ignore[arg-type,return-value]
SCHEMA = schemathesis.openapi.from_dict(SPEC)
HEADERS = {**AUTH, "User-Agent": "schemathesis"}


@pytest.fixture(scope="module")
def api_schema(served_edge: ServedEdge) -> Any:
    SCHEMA.base = served_edge.base  # type: ignore[attr-defined]
    return SCHEMA


def test_served_document_is_this_one(served_edge: ServedEdge) -> None:
    assert requests.get(served_edge.base + "/openapi.json", timeout=30).json() == SPEC


@SCHEMA.parametrize()
@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_edge_conforms_to_its_openapi(case: Any, served_edge: ServedEdge) -> None:
    case.call_and_validate(
        base_url=served_edge.base, headers=HEADERS, checks=CHECKS, allow_redirects=False, timeout=30
    )


def _validate(schema: Any, path: str, method: str, **parts: Any) -> Any:
    case = schema[path][method].Case(**parts)
    response = case.call(base_url=schema.base, headers=HEADERS, allow_redirects=False, timeout=30)
    case.validate_response(response, checks=CHECKS, headers=HEADERS)
    return response


def test_happy_paths_conform(api_schema: Any) -> None:
    created = _validate(api_schema, "/api/v1/conversions/goals", "POST", body=REF_GOAL)
    assert created.status_code == 201, created.text
    goal = created.json()
    link = _validate(
        api_schema, "/api/v1/links", "POST", body={"url": "https://shop.example/", "goal": goal["id"]}
    ).json()
    click = _validate(api_schema, "/c/{link_id}", "GET", path_parameters={"link_id": link["id"]})
    assert click.status_code == 302
    hit = click.headers["location"][0].split("click_id=")[1]
    token = {"token": goal["token"]}
    answers = [
        _validate(api_schema, "/api/v1/conversions/goals", "GET", query={"project": "default"}),
        _validate(
            api_schema, "/api/v1/conversions/goals/{goal_id}", "GET", path_parameters={"goal_id": goal["id"]}
        ),
        _validate(
            api_schema,
            "/api/v1/conversions/goals/{goal_id}",
            "PATCH",
            path_parameters={"goal_id": goal["id"]},
            body={"goal": {"value": 5}},
        ),
        _validate(api_schema, "/api/v1/links", "GET"),
        _validate(api_schema, "/api/v1/links/{link_id}", "GET", path_parameters={"link_id": link["id"]}),
        _validate(api_schema, "/pb/", "GET", query={"hit": hit, "tx": "T1", "rev": 3}),
        _validate(api_schema, "/pb", "POST", query={"hit": hit, "status": "pending"}),
        _validate(
            api_schema, "/api/conversions/track/{token}", "POST", path_parameters=token, body={"value": 1}
        ),
        _validate(
            api_schema, "/api/conversions/track/{token}", "GET", path_parameters=token, query={"value": 2}
        ),
        _validate(
            api_schema,
            "/api/v1/conversions/track",
            "POST",
            body={"postback_token": goal["token"], "value": 1},
        ),
        _validate(
            api_schema,
            "/json/1.3/pushStat",
            "POST",
            body={"request": {"application": "APP-1", "hwid": "h", "hash": "x"}},
        ),
        _validate(
            api_schema,
            "/json/1.3/postEvent",
            "POST",
            body={
                "request": {
                    "application": "APP-1",
                    "hwid": "h",
                    "event": "Buy",
                    "attributes": {"msgHash": "x"},
                }
            },
        ),
        _validate(
            api_schema,
            "/track",
            "POST",
            body={"cid": "1", "pid": "1", "vid": "v", "ev": [{"evt": "hitGoal", "goals": [1]}]},
        ),
        _validate(api_schema, "/track/", "GET", query={"c": "1", "p": "1", "g": "7", "ga": "1"}),
        # ids as integers and as strings, as the parsers accept and the document now says
        _validate(
            api_schema,
            "/track",
            "POST",
            body={"cid": 1, "pid": "p", "vid": "v", "ev": [{"evt": "hitGoal", "goals": [7, "g-2"]}]},
        ),
        _validate(
            api_schema,
            "/track",
            "GET",
            query={"cid": "1", "pid": "p", "vid": "v", "ev[0][evt]": "hitGoal", "ev[0][goals][]": "7"},
        ),
        _validate(
            api_schema,
            "/api/conversions/track/{token}",
            "POST",
            path_parameters=token,
            body={"value": "2.50", "order_id": 12, "click_id": 789},
        ),
        _validate(api_schema, "/healthz", "GET"),
        _validate(api_schema, "/openapi.json", "GET"),
        _validate(
            api_schema,
            "/api/v1/conversions/goals/{goal_id}",
            "DELETE",
            path_parameters={"goal_id": goal["id"]},
        ),
    ]
    assert [a.status_code for a in answers] == [200] * 19 + [204]


def test_every_route_is_documented(served_edge: ServedEdge) -> None:
    spec = requests.get(served_edge.base + "/openapi.json", timeout=30).json()
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    app = served_edge._app
    routes = {
        (r.resource.canonical, r.method)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD" and not r.resource.canonical.startswith("/static")
    }
    assert routes - documented == set(), "routes missing from ingest/http/openapi.py"


def test_alert_rule_happy_paths_conform(api_schema: Any) -> None:
    goal = _validate(api_schema, "/api/v1/conversions/goals", "POST", body=REF_GOAL).json()
    spec = {
        "name": "Few sales",
        "kind": "threshold",
        "op": "below",
        "value": 3,
        "scope": {"goal_id": goal["id"]},
        "channels": {"webhook_url": "https://hooks.example.com/a"},
    }
    created = _validate(api_schema, "/api/v1/alerts", "POST", body={"alert": spec})
    assert created.status_code == 201, created.text
    rule = {"alert_id": created.json()["id"]}
    answers = [
        _validate(api_schema, "/api/v1/alerts", "GET", query={"project": "default"}),
        _validate(api_schema, "/api/v1/alerts/{alert_id}", "GET", path_parameters=rule),
        _validate(
            api_schema,
            "/api/v1/alerts/{alert_id}",
            "PATCH",
            path_parameters=rule,
            body={
                "snoozed_until": "2030-01-01T00:00:00Z",
                "kind": "spike",
                "op": None,
                "value": None,
                "min_count": 5,
                "factor": 2.5,
            },
        ),
        _validate(api_schema, "/api/v1/alerts/{alert_id}/secret/rotate", "POST", path_parameters=rule),
        _validate(api_schema, "/api/v1/alerts/{alert_id}", "DELETE", path_parameters=rule),
    ]
    assert [a.status_code for a in answers] == [200] * 4 + [204], [a.text for a in answers]
