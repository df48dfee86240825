"""The report endpoints over a real ClickHouse server: JSON equal to the report code's answer, CSV of the
same rows, and every bad parameter a 400 naming the problem."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ingest.http.common import ACCESS, METRICS, REPORTS, EdgeMetrics
from ingest.http.forwarding import PROXIES, TrustedProxies
from ingest.http.keys import AccessKeys
from ingest.http.middleware import error_middleware
from ingest.read.reports import add_report_routes
from schemas.reports import ConversionAnalyticsQuery, ExperimentReportQuery
from sinks import reports
from sinks.migrate import migrate
from sinks.server_backend import ServerBackend
from tests.integration.test_reports_backends import FROM, TO, top, write
from trackpipe.report_source import BackendReports

PERIOD = "from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z"


@pytest.fixture
async def client(clickhouse_server, ch_database) -> AsyncIterator[tuple[TestClient, ServerBackend]]:
    with ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database) as b:
        migrate(b)
        write(b)
        with ThreadPoolExecutor(max_workers=2) as executor:
            app = web.Application(middlewares=[error_middleware])
            app[REPORTS] = BackendReports(lambda: b, executor)
            app[METRICS] = EdgeMetrics()
            app[ACCESS] = AccessKeys()  # no key configured: the test client on 127.0.0.1 reads
            app[PROXIES] = TrustedProxies()
            add_report_routes(app)
            async with TestClient(TestServer(app)) as c:
                yield c, b


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_reports_answer_json_and_csv(client: tuple[TestClient, ServerBackend]) -> None:
    c, b = client
    resp = await c.get(f"/api/v1/reports/top-events?project=p&{PERIOD}&push=H1")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == reports.top_events(b, top(push="H1")).model_dump(mode="json", by_alias=True)
    assert (body["rate_base"], body["rate_base_count"], len(body["rows"])) == ("push_opens", 2, 2)
    resp = await c.get(f"/api/v1/reports/top-events?project=p&{PERIOD}&experiment=E1&variation=A&format=csv")
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert csv_rows(await resp.text()) == [
        ["goal_id", "conversions", "converters", "conversion_rate", "revenue"],
        ["purchase", "1", "1", "0.5", "100.0"],
        ["signup", "1", "1", "0.5", "0.0"],
    ]

    resp = await c.get("/api/v1/analytics/conversions?link_id=L1&days=3650")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    expected = reports.conversion_analytics(b, ConversionAnalyticsQuery(link_id="L1", days=3650))
    assert {k: v for k, v in body.items() if k not in ("from", "to")} == expected.model_dump(
        mode="json", exclude={"from_", "to"}
    )
    assert (body["clicks"], body["conversions"], body["total_value"]) == (3, 2, 100.0)
    resp = await c.get("/api/v1/analytics/conversions?link_id=L1&days=3650&project=p&format=csv")
    assert csv_rows(await resp.text())[0] == ["goal_id", "conversions", "total_value", "average_value"]

    resp = await c.get(f"/api/v1/experiments/E1/report?project=p&{PERIOD}")
    assert resp.status == 200, await resp.text()
    query = ExperimentReportQuery(experiment="E1", project="p", from_=FROM, to=TO)
    assert await resp.json() == reports.experiment_report(b, query).model_dump(mode="json", by_alias=True)
    resp = await c.get(f"/api/v1/experiments/E1/report?project=p&{PERIOD}&baseline=B&format=csv")
    table = csv_rows(await resp.text())
    assert table[0][:3] == ["variation_id", "exposures", "conversions"]
    assert [row[0] for row in table[1:]] == ["A", "B"]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        (f"/api/v1/reports/top-events?project=p&{PERIOD}&link=L1&push=H1", "at most one filter"),
        (f"/api/v1/reports/top-events?project=p&{PERIOD}&experiment=E1", "go together"),
        ("/api/v1/reports/top-events?project=p&link=", "link"),
        ("/api/v1/reports/top-events?project=p&page=2", "unknown parameter"),
        ("/api/v1/analytics/conversions?days=30", "link_id"),
        ("/api/v1/analytics/conversions?link_id=L1&days=0", "days"),
        ("/api/v1/analytics/conversions?link_id=L1&days=many", "days"),
        ("/api/v1/experiments/E1/report", "project"),
        (
            "/api/v1/experiments/E1/report?project=p&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "before",
        ),
        ("/api/v1/experiments/E1/report?project=p&format=xml", "format"),
        ("/api/v1/reports/top-events?project=p&currency=EURO", "currency"),
    ],
)
async def test_bad_parameters_are_a_400_naming_the_problem(
    client: tuple[TestClient, ServerBackend], path: str, problem: str
) -> None:
    c, _ = client
    resp = await c.get(path)
    assert resp.status == 400, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_query" and problem in error["message"], error


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "trackpipe.cli",
        "report",
        "top-events",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_cli_passes_every_top5_filter(client: tuple[TestClient, ServerBackend]) -> None:
    c, b = client
    url = str(c.make_url("/"))
    period = ["--project", "p", "--from", "2026-01-01T00:00:00", "--to", "2026-02-01T00:00:00Z"]
    cases: list[tuple[list[str], dict[str, str]]] = [
        (["--campaign", "spring"], {"campaign": "spring"}),
        (["--link", "L1"], {"link": "L1"}),
        (["--push", "H1"], {"push": "H1"}),
        (["--experiment", "E1", "--variation", "B"], {"experiment": "E1", "variation": "B"}),
        (["--limit", "1", "--currency", "usd"], {}),
    ]
    for options, filters in cases:
        code, out, err = await cli(*period, *options, "--url", url, "--json")
        assert code == 0, err
        body = json.loads(out)
        query = top(**filters, **({"limit": 1, "currency": "USD"} if "--limit" in options else {}))
        assert body == reports.top_events(b, query).model_dump(mode="json", by_alias=True), options
        assert body["filter"] == filters
    # no rates loaded: the three EUR purchases stay unconverted
    assert len(body["rows"]) == 1 and body["currency"] == "USD" and body["unconverted_conversions"] == 3
    assert (body["rows"][0]["revenue"], body["revenue_raw"]) == (0.0, {"EUR": 125.0})

    code, out, err = await cli(*period, "--link", "L1", "--url", url)
    assert code == 0, err
    assert "filter link=L1  rate base clicks 3" in out and "purchase" in out
    # a bad combination is refused before any request, naming the problem
    code, out, err = await cli(*period, "--link", "L1", "--push", "H1", "--url", "http://127.0.0.1:9")
    assert code == 2 and "at most one filter" in err, err
    code, out, err = await cli(*period, "--experiment", "E1", "--url", "http://127.0.0.1:9")
    assert code == 2 and "go together" in err, err
