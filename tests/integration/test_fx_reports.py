"""Revenue in the project's currency: rates loaded with ``trackpipe fx load``, the currency set with
``trackpipe fx currency``, and every report converting each conversion with the rate of its day.

The same conversions (EUR, USD and GBP transactions; no GBP rate) give the same numbers from a ClickHouse
server (rates loaded through the CLI), from the chdb engine in this process, and from ``trackpipe run``
(the embedded store, events sent over HTTP, rates loaded with ``--data-dir``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from schemas.reports import ConversionAnalyticsQuery, ExperimentReportQuery, TopEventsQuery
from schemas.rows import Conversion, ExposureRow, ProcessedBatch
from sinks import fx, reports
from sinks.backend import ClickHouseBackend
from sinks.chdb_backend import ChdbBackend
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.server_backend import ServerBackend
from tests.integration.test_config_embedded import _redirect_of
from tests.integration.test_inputs_edge import ADMIN_KEY, AUTH
from tests.scenario import Proc, free_port, http, run_cli

TODAY = datetime.now(UTC).date()


def rates_csv(today: date) -> str:
    """EUR->USD 1.0 ten days ago, 1.1 yesterday; USD->JPY (unused); no GBP rate at all."""
    return "\n".join(
        [
            "date,base,quote,rate",
            f"{today - timedelta(days=10)},EUR,USD,1.0",
            f"{today - timedelta(days=1)},EUR,USD,1.1",
            f"{today - timedelta(days=1)},USD,JPY,150",
            f"{today + timedelta(days=1)},EUR,USD,9",  # after the conversions: never used
            "",
        ]
    )


# Transactions of one goal: 100 EUR, 50 USD, 20 GBP (no rate), in the USD project.
TOP_USD = {
    "currency": "USD",
    "revenue": 160.0,  # 100 EUR x 1.1 (yesterday's rate) + 50 USD; the GBP one left out
    "revenue_raw": {"EUR": 100.0, "GBP": 20.0, "USD": 50.0},
    "unconverted_conversions": 1,
}
TOP_EUR = {  # the same in EUR (?currency=EUR): 50 USD / 1.1 (the inverse of the EUR->USD rate) + 100
    "currency": "EUR",
    "revenue": 145.4545,
    "revenue_raw": {"EUR": 100.0, "GBP": 20.0, "USD": 50.0},
    "unconverted_conversions": 1,
}


def money(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "currency": report["currency"],
        "revenue": report["rows"][0]["revenue"] if "rows" in report else None,
        "revenue_raw": report["revenue_raw"],
        "unconverted_conversions": report["unconverted_conversions"],
    }


# --- server and in-process chdb: conversions written by the sink ---------------------------------------

P = "shop"
NOW = datetime.combine(TODAY, datetime.min.time(), UTC) + timedelta(hours=12)


def conversion(key: str, visitor: str, revenue: str, currency: str, version: int, **kw: Any) -> Conversion:
    when = kw.pop("when", NOW)
    return Conversion(
        project_id=P,
        goal_id=kw.pop("goal", "purchase"),
        conversion_key=key,
        account_id="a",
        visitor_id=visitor,
        event_id=f"ev-{key}",
        event_type="postback",
        occurred_at=when,
        received_at=when,
        revenue=Decimal(revenue),
        currency=currency,
        products_count=0,
        transaction_id=key,
        experiment_ids=(),
        variation_ids=(),
        version=version,
        attributed_link_id="L1",
        attributed_at=when - timedelta(seconds=60),
        time_to_convert_ms=60_000,
        **kw,
    )


BATCHES = [
    ProcessedBatch(
        conversions=(
            conversion("tx:T1", "v1", "100", "EUR", 1),
            conversion("tx:T2", "v2", "50", "USD", 2),
            conversion("tx:T3", "v3", "20", "GBP", 3),
            # 8 days ago: 7 EUR at the rate of 10 days ago (1.0) = 7 USD; then reversed: counts nowhere
            conversion("tx:T4", "v4", "7", "EUR", 4, when=NOW - timedelta(days=8)),
            conversion("signup", "v1", "0", "", 5, goal="signup"),
        ),
        exposures=tuple(
            ExposureRow(
                project_id=P,
                account_id="a",
                experiment_id="E1",
                variation_id=var,
                visitor_id=v,
                first_seen_at=NOW - timedelta(days=9),
                version=1,
            )
            for v, var in (("v1", "A"), ("v2", "A"), ("v3", "B"), ("v4", "B"))
        ),
    ),
    ProcessedBatch(
        conversions=(
            conversion(
                "tx:T4",
                "v4",
                "7",
                "EUR",
                9,
                when=NOW - timedelta(days=8),
                status="rejected",
                status_class="reversed",
                is_deleted=True,
            ),
        )
    ),
]
PERIOD = {"from_": NOW - timedelta(days=20), "to": NOW + timedelta(hours=1)}


def all_reports(b: ClickHouseBackend, **currency: str) -> dict[str, Any]:
    return {
        "top": reports.top_events(b, TopEventsQuery(project=P, **PERIOD, **currency)).model_dump(),
        "analytics": reports.conversion_analytics(
            b, ConversionAnalyticsQuery(link_id="L1", project=P, **currency), NOW + timedelta(hours=1)
        ).model_dump(),
        "experiment": reports.experiment_report(
            b, ExperimentReportQuery(experiment="E1", project=P, **PERIOD, **currency)
        ).model_dump(),
    }


def write(b: ClickHouseBackend) -> None:
    sink = ClickHouseSink(b)
    for i, batch in enumerate(BATCHES):
        sink.write_batch(batch, f"fx/0/{i}")


@pytest.fixture
def server(clickhouse_server, ch_database) -> Iterator[ServerBackend]:
    with ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database) as b:
        migrate(b)
        b.command("SYSTEM STOP MERGES conversions")
        b.command("SYSTEM STOP MERGES fx_rates")  # a reloaded file stays stored twice: FINAL must cope
        yield b


def check_usd(got: dict[str, Any]) -> None:
    top = got["top"]
    assert money(top) == TOP_USD
    assert [(r["goal_id"], r["conversions"], r["revenue"]) for r in top["rows"]] == [
        ("purchase", 3, 160.0),
        ("signup", 1, 0.0),
    ]
    analytics = got["analytics"]
    assert (analytics["conversions"], analytics["total_value"], analytics["average_value"]) == (
        4,
        160.0,
        40.0,
    )
    assert (analytics["currency"], analytics["unconverted_conversions"]) == ("USD", 1)
    assert [(r["goal_id"], r["total_value"], r["average_value"]) for r in analytics["rows"]] == [
        ("purchase", 160.0, 53.3333),
        ("signup", 0.0, 0.0),
    ]
    experiment = got["experiment"]  # A: v1 (100 EUR), v2 (50 USD); B: v3 (20 GBP), v4 (reversed)
    assert [(r["variation_id"], r["conversions"], r["revenue"]) for r in experiment["rows"]] == [
        ("A", 3, 160.0),
        ("B", 1, 0.0),
    ]
    assert money({k: v for k, v in experiment.items() if k != "rows"}) == {**TOP_USD, "revenue": None}


def test_server_and_chdb_convert_revenue_the_same(
    server: ServerBackend, clickhouse_server, chdb_path, tmp_path: Path
) -> None:
    write(server)
    unconverted = all_reports(server)  # no currency set: the amounts as sent, summed (as before)
    assert money(unconverted["top"]) == {
        "currency": None,
        "revenue": 170.0,
        "revenue_raw": {"EUR": 100.0, "GBP": 20.0, "USD": 50.0},
        "unconverted_conversions": 0,
    }

    env = {
        "TRACKPIPE_CLICKHOUSE_HOST": clickhouse_server.host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(clickhouse_server.http_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": server.database,
    }
    (tmp_path / "rates.csv").write_text(rates_csv(TODAY))
    out = run_cli(["fx", "load", str(tmp_path / "rates.csv")], env, tmp_path)
    assert "loaded 4 rates (EUR->USD, USD->JPY)" in out
    run_cli(["fx", "load", str(tmp_path / "rates.csv")], env, tmp_path)  # again: changes nothing
    assert server.query("SELECT count() FROM fx_rates")[0][0] == 8  # stored twice, merged at read
    run_cli(["fx", "currency", P, "usd"], env, tmp_path)

    from_server = all_reports(server)
    check_usd(from_server)
    in_eur = all_reports(server, currency="EUR")
    assert money(in_eur["top"]) == TOP_EUR

    with ChdbBackend(str(chdb_path), f"fx_{uuid.uuid4().hex}") as embedded:
        migrate(embedded)
        write(embedded)
        fx.load_rates(embedded, fx.parse_rates(rates_csv(TODAY)))
        fx.set_project_currency(embedded, P, "USD")
        assert all_reports(embedded) == from_server
        assert all_reports(embedded, currency="EUR") == in_eur
        write(embedded)  # a replay changes nothing
        assert all_reports(embedded) == from_server

    # a newer load of a corrected rate replaces the stored one
    (tmp_path / "fix.csv").write_text(f"date,base,quote,rate\n{TODAY - timedelta(days=1)},EUR,USD,1.2\n")
    run_cli(["fx", "load", str(tmp_path / "fix.csv")], env, tmp_path)
    assert money(all_reports(server)["top"])["revenue"] == 170.0  # 100 x 1.2 + 50


def test_fx_load_refuses_a_bad_file_and_names_the_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,base,quote,rate\n2026-01-09,EUR,USD,1.08\n2026-01-10,EUR,USD,-1\nx,EUR,USD,1\n")
    out = subprocess.run(
        [sys.executable, "-m", "trackpipe.cli", "fx", "load", str(bad), "--data-dir", str(tmp_path / "d")],
        env=os.environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "nothing loaded" in out.stderr
    assert "line 3: rate '-1' must be a number above 0 and below 10^12" in out.stderr
    assert "line 4: date 'x' is not YYYY-MM-DD" in out.stderr
    assert not (tmp_path / "d").exists()  # refused before opening the store


# --- embedded: `trackpipe run`, events over HTTP, `trackpipe fx ... --data-dir` --------------------------


def top_report(base: str, project: str, **params: str) -> dict[str, Any]:
    query = urllib.parse.urlencode({"project": project, **params})
    status, body = http("GET", f"{base}/api/v1/reports/top-events?{query}", headers=AUTH)
    assert status == 200, body
    return body  # type: ignore[no-any-return]


def test_embedded_reports_convert_revenue_after_fx_load(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["run", "--port", str(port), "--data-dir", str(data)]
    env = {"TRACKPIPE_ADMIN_KEY": ADMIN_KEY}
    proc = Proc(args, env, tmp_path / "run1.log")
    try:
        proc.wait_healthy(base)
        goal_body = {"goal": {"project": P, "name": "Purchase", "goal_type": "purchase"}}
        status, goal = http("POST", base + "/api/v1/conversions/goals", json.dumps(goal_body).encode(), AUTH)
        assert status == 201, goal
        link_body = json.dumps({"project": P, "url": "https://shop.example/", "goal": goal["id"]}).encode()
        status, link = http("POST", base + "/api/v1/links", link_body, AUTH)
        assert status == 201, link
        for tx, rev, currency in (("T1", "100", "EUR"), ("T2", "50", "USD"), ("T3", "20", "GBP")):
            hit = parse_qs(urlsplit(_redirect_of(f"{base}/c/{link['id']}")).query)["click_id"][0]
            status, answer = http("GET", f"{base}/pb/?hit={hit}&tx={tx}&rev={rev}&currency={currency}")
            assert status == 200, answer
        deadline = time.monotonic() + 60
        while [(r["conversions"], r["revenue"]) for r in top_report(base, P)["rows"]] != [(3, 170.0)]:
            assert time.monotonic() < deadline, top_report(base, P)
            time.sleep(0.3)
    finally:
        assert proc.stop() == 0, proc.tail()

    (tmp_path / "rates.csv").write_text(rates_csv(datetime.now(UTC).date()))
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKPIPE_CLICKHOUSE")}
    out = run_cli(["fx", "load", str(tmp_path / "rates.csv"), "--data-dir", str(data)], cli_env, tmp_path)
    assert "loaded 4 rates" in out
    run_cli(["fx", "currency", P, "USD", "--data-dir", str(data)], cli_env, tmp_path)

    proc = Proc(args, env, tmp_path / "run2.log")
    try:
        proc.wait_healthy(base)
        top = top_report(base, P)
        assert {**money(top), "revenue": top["rows"][0]["revenue"]} == TOP_USD
        assert money(top_report(base, P, currency="EUR")) == TOP_EUR
        query = urllib.parse.urlencode({"link_id": link["id"]})
        status, analytics = http("GET", f"{base}/api/v1/analytics/conversions?{query}", headers=AUTH)
        assert status == 200, analytics
        assert (analytics["currency"], analytics["total_value"]) == (None, 170.0)  # no project: as sent
        query = urllib.parse.urlencode({"link_id": link["id"], "project": P})
        status, analytics = http("GET", f"{base}/api/v1/analytics/conversions?{query}", headers=AUTH)
        assert (analytics["currency"], analytics["total_value"], analytics["conversions"]) == (
            "USD",
            160.0,
            3,
        )
        assert analytics["revenue_raw"] == TOP_USD["revenue_raw"]
        # the CLI prints the converted report (the edge has a key: the CLI sends it)
        args = ["report", "top-events", "--project", P, "--url", base]
        out = run_cli(args, {"TRACKPIPE_REPORT_KEY": ADMIN_KEY}, tmp_path)
        assert "revenue in USD (1 conversions without a rate)" in out and "160.00" in out
    finally:
        assert proc.stop() == 0, proc.tail()
