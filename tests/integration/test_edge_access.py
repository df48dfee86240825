"""Who may read what through the real edge: reports and the project list need the admin key or a
project's read key (or, with no key configured, a client on the edge's own host); /metrics its own key;
wrong keys are throttled per client IP; the client IP and https come from trusted proxies only."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from ingest.app import build_edge_app
from ingest.config.edge import EdgeConfig
from ingest.config.file_store import FileConfigStore
from schemas.reports import (
    ConversionAnalytics,
    ConversionAnalyticsQuery,
    ExperimentReport,
    ExperimentReportQuery,
    ProjectRow,
    ProjectsQuery,
    ProjectsReport,
    TopEventsQuery,
    TopEventsReport,
)
from tests.edge_helpers import local_edge, logged_events, raw_request, read_answer, served
from tests.integration.test_inputs_edge import (
    ADMIN_KEY,
    AUTH,
    REF_GOAL,
    UA,
    create_goal,
    create_link,
    inputs_app,
)
from trackpipe.local_publisher import LocalLogPublisher
from trackpipe.locallog import LocalLog
from trackpipe.settings import Settings

SHOP_KEY = "shop-read-key-" + "s" * 30
SHARED_KEY = "blog-and-news-key-" + "b" * 30
METRICS_KEY = "metrics-key-" + "m" * 30
READ_KEYS = {"shop": SHOP_KEY, "blog": SHARED_KEY, "news": SHARED_KEY}
PROJECTS = ["news", "shop", "blog", "other"]  # most recently active first


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Reports:
    """A ReportSource answering empty reports for the project asked (access is what is tested here)."""

    async def top_events(self, query: TopEventsQuery) -> TopEventsReport:
        start, end = query.period()
        return TopEventsReport(project=query.project, from_=start, to=end, visitors=0, rows=[])

    async def projects(self, query: ProjectsQuery, only=None) -> ProjectsReport:
        now = datetime.now(UTC)
        among = [p for p in PROJECTS if only is None or p in only]
        rows = [ProjectRow(project=p, last_event_at=now) for p in among[: query.limit]]
        return ProjectsReport(rows=rows)

    async def conversion_analytics(self, query: ConversionAnalyticsQuery) -> ConversionAnalytics:
        start, end = query.period()
        return ConversionAnalytics(
            link_id=query.link_id,
            project=query.project,
            days=query.days,
            from_=start,
            to=end,
            clicks=0,
            conversions=0,
            conversion_rate=0.0,
            total_value=0.0,
            average_value=0.0,
            time_to_convert_mean_s=None,
            time_to_convert_median_s=None,
            rows=[],
        )

    async def experiment_report(self, query: ExperimentReportQuery) -> ExperimentReport:
        start, end = query.period()
        return ExperimentReport(
            project=query.project,
            experiment=query.experiment,
            goal=None,
            from_=start,
            to=end,
            baseline=None,
            rows=[],
        )


def access_app(
    tmp: Path,
    admin_key: str | None = ADMIN_KEY,
    read_keys: dict[str, str] | None = READ_KEYS,
    metrics_key: str | None = None,
    **cfg: Any,
) -> web.Application:
    log = LocalLog(tmp / "log")
    return build_edge_app(
        EdgeConfig(**cfg),
        lambda: LocalLogPublisher(log, partitions=1),
        Reports(),
        config_store=FileConfigStore(tmp / "config.log"),
        admin_key=admin_key,
        read_keys=read_keys,
        metrics_key=metrics_key,
    )


def report_paths(project: str) -> list[str]:
    return [
        f"/api/v1/reports/top-events?project={project}",
        f"/api/v1/reports/top-events?project={project}&format=csv",
        f"/api/v1/experiments/E1/report?project={project}",
        f"/api/v1/analytics/conversions?link_id=L1&project={project}",
    ]


async def error_of(resp: Any) -> dict[str, str]:
    return dict((await resp.json())["error"])


# ---------------------------------------------------------------- reads


async def test_reports_need_a_key_of_the_project(tmp_path):
    app = access_app(tmp_path, auth_failures_per_minute=1000)  # this test tries many wrong keys itself
    async with TestClient(TestServer(app)) as client:
        for path in [*report_paths("shop"), "/api/v1/projects"]:
            basic = {"Authorization": f"Basic {ADMIN_KEY}"}
            for headers in ({}, bearer("wrong"), bearer(SHOP_KEY + "x"), basic):
                resp = await client.get(path, headers=headers)
                assert resp.status == 401, (path, headers)
                assert (await error_of(resp))["code"] == "unauthorized"
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await client.get(path, headers=AUTH)).status == 200, path
            assert (await client.get(path, headers=bearer(SHOP_KEY))).status == 200, path
            resp = await client.get(path, headers=bearer(METRICS_KEY))
            assert resp.status == 401, path  # not a key of this edge at all

        for project, key, allowed in [
            ("blog", SHOP_KEY, False),
            ("other", SHOP_KEY, False),
            ("blog", SHARED_KEY, True),
            ("news", SHARED_KEY, True),
            ("shop", SHARED_KEY, False),
            ("other", ADMIN_KEY, True),
        ]:
            for path in report_paths(project):
                resp = await client.get(path, headers=bearer(key))
                if allowed:
                    assert resp.status == 200, (path, await resp.text())
                else:
                    assert resp.status == 403, (path, await resp.text())
                    err = await error_of(resp)
                    assert err["code"] == "forbidden" and project in err["message"]

        # a read key must name its project where the project is optional
        resp = await client.get("/api/v1/analytics/conversions?link_id=L1", headers=bearer(SHOP_KEY))
        assert resp.status == 403 and "&project=" in (await error_of(resp))["message"]
        assert (await client.get("/api/v1/analytics/conversions?link_id=L1", headers=AUTH)).status == 200


async def test_the_project_list_shows_only_what_the_key_may_read(tmp_path):
    async with TestClient(TestServer(access_app(tmp_path))) as client:

        async def listed(key: str, query: str = "") -> list[str]:
            resp = await client.get("/api/v1/projects" + query, headers=bearer(key))
            assert resp.status == 200, await resp.text()
            return [row["project"] for row in (await resp.json())["rows"]]

        assert await listed(ADMIN_KEY) == PROJECTS
        assert await listed(SHOP_KEY) == ["shop"]
        assert await listed(SHARED_KEY) == ["news", "blog"]
        assert await listed(SHARED_KEY, "?limit=1") == ["news"]
        resp = await client.get("/api/v1/projects?format=csv", headers=bearer(SHOP_KEY))
        assert (await resp.text()).splitlines()[1].startswith("shop,")


async def test_without_keys_reads_and_metrics_are_for_this_host_only(tmp_path):
    app = access_app(tmp_path, admin_key=None, read_keys=None, trusted_proxies="127.0.0.1")
    async with TestClient(TestServer(app)) as client:
        for path in [*report_paths("shop"), "/api/v1/projects", "/metrics"]:
            # the test client is on 127.0.0.1: `make run` and the README's curl lines work as they are
            assert (await client.get(path)).status == 200, path
            # a local client behind the (trusted) local proxy too
            assert (await client.get(path, headers={"X-Forwarded-For": "127.0.0.1"})).status == 200, path
            # anyone else, through the proxy, gets a 403 naming the setting to set
            resp = await client.get(path, headers={"X-Forwarded-For": "203.0.113.9"})
            assert resp.status == 403, path
            err = await error_of(resp)
            if path == "/metrics":
                assert err["code"] == "metrics_need_key" and "TRACKPIPE_METRICS_KEY" in err["message"]
            else:
                assert err["code"] == "reads_need_key" and "TRACKPIPE_READ_KEYS" in err["message"]

    # a local process forwarding for someone else without being a trusted proxy is not "this host"
    async with TestClient(TestServer(access_app(tmp_path / "b", admin_key=None, read_keys=None))) as client:
        for headers in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}):
            resp = await client.get("/api/v1/projects", headers=headers)
            assert resp.status == 403 and (await error_of(resp))["code"] == "reads_need_key"
            assert (await client.get("/metrics", headers=headers)).status == 403


async def test_metrics_need_the_metrics_key_or_the_admin_key(tmp_path):
    async with TestClient(TestServer(access_app(tmp_path, metrics_key=METRICS_KEY))) as client:
        for headers in ({}, bearer(SHOP_KEY), bearer("wrong")):
            resp = await client.get("/metrics", headers=headers)
            assert resp.status == 401 and (await error_of(resp))["code"] == "unauthorized", headers
        for key in (METRICS_KEY, ADMIN_KEY):
            resp = await client.get("/metrics", headers=bearer(key))
            assert resp.status == 200 and "trackpipe_edge_requests_rejected_total" in await resp.text()
    # a read key alone does not open /metrics to non-local clients, and does not close it to local ones
    app = access_app(tmp_path / "b", admin_key=None, trusted_proxies="127.0.0.1")
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/metrics")).status == 200
        assert (await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})).status == 403


# ---------------------------------------------------------------- wrong keys


async def test_wrong_keys_are_throttled_per_client_ip(tmp_path):
    app = access_app(tmp_path, trusted_proxies="127.0.0.1", auth_failures_per_minute=5)
    a, b = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "198.51.100.2"}
    report = "/api/v1/reports/top-events?project=shop"
    async with TestClient(TestServer(app)) as client:
        guesses = [await client.get(report, headers={**a, **bearer(f"guess-{i}")}) for i in range(40)]
        statuses = [r.status for r in guesses]
        assert statuses == [401] * 5 + [429] * 35
        resp = await client.get(report, headers={**a, **bearer("guess")})
        assert (await error_of(resp))["code"] == "too_many_failures" and int(resp.headers["Retry-After"]) >= 1
        # while blocked, even the right key is not looked at (a lucky guess would not be told)
        assert (await client.get(report, headers={**a, **AUTH})).status == 429
        assert (await client.post("/api/v1/links", json={}, headers={**a, **AUTH})).status == 429
        # a client-written X-Forwarded-For entry does not buy a fresh budget
        spoofed = {"X-Forwarded-For": "203.0.113.77, 198.51.100.1", **bearer("guess")}
        assert (await client.get(report, headers=spoofed)).status == 429
        # another address is not affected
        assert (await client.get(report, headers={**b, **AUTH})).status == 200
        # the admin API counts wrong admin keys the same way
        c = {"X-Forwarded-For": "198.51.100.3"}
        admin = [
            (await client.get("/api/v1/links", headers={**c, **bearer(f"admin-guess-{i}")})).status
            for i in range(7)
        ]
        assert admin == [401] * 5 + [429] * 2
        # asking without a key is not guessing: never throttled
        d = {"X-Forwarded-For": "198.51.100.4"}
        assert {(await client.get(report, headers=d)).status for _ in range(10)} == {401}


async def test_undecodable_bearer_is_a_401(tmp_path):
    app, _ = inputs_app(tmp_path, reports=Reports())  # the admin key only
    async with served(app) as port:
        for path in ("/api/v1/conversions/goals", "/api/v1/projects", "/metrics"):
            for value in (b"Bearer \xff", b"Bearer " + ADMIN_KEY.encode() + b"\xff", b"\xff\xfe"):
                request = b"GET %s HTTP/1.1\r\nHost: edge\r\nAuthorization: %s\r\nConnection: close\r\n\r\n"
                reader, writer = await raw_request(port, request % (path.encode(), value))
                async with asyncio.timeout(10):
                    answer = await read_answer(reader)
                writer.close()
                assert answer.status == 401, (path, value, answer.body)
                assert orjson.loads(answer.body)["error"]["code"] == "unauthorized"


# ---------------------------------------------------------------- key strength


def test_short_or_odd_keys_are_refused_at_start_up(tmp_path):
    secret = "tiny-secret-xyz"
    for field, env in [
        ("admin_key", "TRACKPIPE_ADMIN_KEY"),
        ("metrics_key", "TRACKPIPE_METRICS_KEY"),
        ("read_keys", "TRACKPIPE_READ_KEYS"),
    ]:
        value = f"shop={secret}" if field == "read_keys" else secret
        with pytest.raises(ValidationError) as info:
            Settings(**{field: value})
        assert "at least 32 characters" in str(info.value) and env in str(info.value)
        assert secret not in str(info.value)
    assert Settings(admin_key="k" * 32).admin_key_value() == "k" * 32
    with pytest.raises(ValueError, match="TRACKPIPE_ADMIN_KEY must be at least 32"):
        access_app(tmp_path, admin_key="x")

    # `trackpipe run` says so and exits, naming the variable and never the value
    out = subprocess.run(
        [sys.executable, "-m", "trackpipe.cli", "run", "--data-dir", str(tmp_path / "data")],
        env={**os.environ, "TRACKPIPE_ADMIN_KEY": secret},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "TRACKPIPE_ADMIN_KEY" in out.stderr and "at least 32 characters" in out.stderr
    assert secret not in out.stderr + out.stdout and "Traceback" not in out.stderr


# ---------------------------------------------------------------- client IP and https from trusted proxies


TRACK = {"cid": "1", "pid": "1", "vid": "v-1", "ev": [{"evt": "hitGoal", "goals": [7]}]}
PUSH = {"request": {"application": "APP-1", "hwid": "h", "hash": "x"}}


async def _client_ips(tmp: Path, headers: dict[str, str], **cfg: Any) -> list[str | None]:
    app, log = local_edge(tmp, **cfg)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/track", data=orjson.dumps(TRACK), headers={**UA, **headers})
        assert resp.status == 200, await resp.text()
        resp = await client.post("/json/1.3/pushStat", json=PUSH, headers={**UA, **headers})
        assert resp.status == 200, await resp.text()
    return [e.client_ip for e in logged_events(log)]


async def test_spoofed_forwarded_for_does_not_change_the_client_ip(tmp_path):
    spoof = {"X-Forwarded-For": "6.6.6.6"}
    # no trusted proxy: the peer's address, whatever the client writes
    assert await _client_ips(tmp_path / "a", spoof) == ["127.0.0.1"] * 2
    # the peer is a trusted proxy: the address it appended, not the client-written one left of it
    chain = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}
    assert await _client_ips(tmp_path / "b", chain, trusted_proxies="127.0.0.1") == ["203.0.113.7"] * 2
    # a trusted proxy is not trusted for more than its own network
    ips = await _client_ips(tmp_path / "c", chain, trusted_proxies="10.0.0.0/8")
    assert ips == ["127.0.0.1"] * 2


def test_the_leftmost_forwarded_for_flag_is_gone():
    with pytest.raises(ValidationError, match="TRACKPIPE_EDGE__TRUSTED_PROXIES"):
        EdgeConfig(trust_forwarded_for=True)
    assert EdgeConfig(trust_forwarded_for=False).trusted_proxies == ()
    with pytest.raises(ValidationError, match="every address"):
        EdgeConfig(trusted_proxies="0.0.0.0/0")


@pytest.mark.parametrize(
    ("trusted", "headers", "secure"),
    [
        ("127.0.0.1", {"X-Forwarded-Proto": "https"}, True),
        ("127.0.0.1", {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}, True),
        ("127.0.0.1", {"X-Forwarded-Proto": "http"}, False),
        ("127.0.0.1", {}, False),
        ("", {"X-Forwarded-Proto": "https"}, False),  # not from a trusted proxy: not believed
        ("10.0.0.0/8", {"X-Forwarded-Proto": "https"}, False),
    ],
)
async def test_visitor_cookie_is_secure_behind_a_tls_proxy(tmp_path, trusted, headers, secure):
    log = LocalLog(tmp_path / "log")
    app = build_edge_app(
        EdgeConfig(trusted_proxies=trusted),
        lambda: LocalLogPublisher(log, partitions=1),
        config_store=FileConfigStore(tmp_path / "config.log"),
        admin_key=ADMIN_KEY,
    )
    async with TestClient(TestServer(app)) as client:
        goal = await create_goal(client, REF_GOAL)
        link = await create_link(client, goal=goal["id"])
        resp = await client.get(f"/c/{link['id']}", headers={**UA, **headers}, allow_redirects=False)
        assert resp.status == 302
        cookie = resp.headers["Set-Cookie"]
        assert cookie.startswith("tp_vid=") and "HttpOnly" in cookie
        assert ("Secure" in cookie) is secure, cookie
        # the tracking URLs the admin answers hand out use the scheme the client spoke to the proxy
        answer = await client.post(
            "/api/v1/links",
            json={"project": "default", "url": "https://shop.example/", "goal": goal["id"]},
            headers={**AUTH, **headers},
        )
        assert answer.status == 201
        url = (await answer.json())["tracking_url"]
        assert url.startswith("https://" if secure else "http://"), url
