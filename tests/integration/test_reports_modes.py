"""The same traffic into `trackpipe run` (embedded chdb) and into edge -> Kafka -> worker -> ClickHouse
server: every report answers the same, filtered Top-5s and the experiment report included."""

from __future__ import annotations

import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.scenario import EXPECTED_ROWS, Proc, free_port, http, run_cli, send_scenario, wait_report

NOW = datetime.now(UTC)
PERIOD = {"from": (NOW - timedelta(days=1)).isoformat(), "to": (NOW + timedelta(days=1)).isoformat()}
REPORTS = [
    ("/api/v1/reports/top-events", {"project": "12345", **PERIOD}),
    (
        "/api/v1/reports/top-events",
        {"project": "12345", "experiment": "ABCD", "variation": "12345", **PERIOD},
    ),
    ("/api/v1/reports/top-events", {"project": "12345", "campaign": "test_campaign", **PERIOD}),
    ("/api/v1/experiments/ABCD/report", {"project": "12345", **PERIOD}),
    ("/api/v1/experiments/DEF/report", {"project": "12345", "goal": "12345", **PERIOD}),
    ("/api/v1/analytics/conversions", {"link_id": "none", "project": "12345"}),
]


def all_reports(base: str) -> list[Any]:
    out = []
    for path, params in REPORTS:
        status, body = http("GET", f"{base}{path}?{urllib.parse.urlencode(params)}")
        assert status == 200, (path, body)
        if path.endswith("/analytics/conversions"):  # its period ends "now"
            body = {k: v for k, v in body.items() if k not in ("from", "to")}
        out.append(body)
    return out


def settled_reports(base: str, timeout: float = 90) -> list[Any]:
    """The reports once the traffic is processed (Top-5 as expected, exposures stored), and stable."""
    wait_report(base, "12345", EXPECTED_ROWS, timeout=timeout)
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        current = all_reports(base)
        if current == previous and current[3]["rows"]:
            return current
        previous = current
        time.sleep(1)
    raise AssertionError(f"reports never settled: {previous}")


def test_embedded_and_distributed_answer_every_report_the_same(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = Proc(["run", "--port", str(port), "--data-dir", str(tmp_path / "data")], {}, tmp_path / "run.log")
    try:
        run.wait_healthy(base)
        send_scenario(base)
        embedded = settled_reports(base)
    finally:
        assert run.stop() == 0, run.tail()

    env = {
        "TRACKPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRACKPIPE_KAFKA_TOPIC": unique_name("events"),
        "TRACKPIPE_PARTITIONS": "2",
        "TRACKPIPE_CLICKHOUSE_HOST": clickhouse_server.host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(clickhouse_server.http_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": ch_database,
        "TRACKPIPE_WORKER_APP_ID": unique_name("worker"),
        "TRACKPIPE_WORKER_BATCH_WITHIN_S": "0.2",
        "TRACKPIPE_WORKER_METRICS_PORT": "0",
    }
    run_cli(["topics", "create"], env, tmp_path)
    run_cli(["migrate"], env, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc(["edge", "--port", str(port)], env, tmp_path / "edge.log")
    worker = Proc(["worker"], env, tmp_path / "worker.log")
    try:
        edge.wait_healthy(base)
        send_scenario(base)
        distributed = settled_reports(base)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- edge ---\n{edge.tail()}\n--- worker ---\n{worker.tail()}") from None
    finally:
        edge.stop()
        worker.stop()

    assert distributed == embedded
    top, by_variation, by_campaign, abcd, _def, _analytics = embedded
    assert top["rows"] == EXPECTED_ROWS and top["rate_base"] == "visitors"
    assert by_variation["rate_base"] == "exposed_visitors" and by_variation["rate_base_count"] >= 1
    assert by_campaign["rate_base"] == "campaign_visitors" and by_campaign["rate_base_count"] == 1
    assert [r["variation_id"] for r in abcd["rows"]] == ["12345"] and abcd["rows"][0]["exposures"] >= 1
