"""The spine through real servers: edge -> Apache Kafka -> Faust worker -> ClickHouse server -> report.

The expected rows are the same ones the embedded test checks, so both backends give identical reports.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.scenario import EXPECTED_ROWS, Proc, free_port, run_cli, send_scenario, wait_report


def worker_metrics(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The worker's Prometheus samples: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_distributed_reference_scenario(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = {
        "TRACKPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRACKPIPE_KAFKA_TOPIC": unique_name("events"),
        "TRACKPIPE_PARTITIONS": "3",
        "TRACKPIPE_CLICKHOUSE_HOST": clickhouse_server.host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(clickhouse_server.http_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": ch_database,
        "TRACKPIPE_WORKER_APP_ID": unique_name("worker"),
        "TRACKPIPE_WORKER_BATCH_WITHIN_S": "0.2",
        "TRACKPIPE_WORKER_METRICS_PORT": str(free_port()),
    }
    assert "created" in run_cli(["topics", "create"], env, tmp_path)
    assert "exists" in run_cli(["topics", "create"], env, tmp_path)
    assert "events_raw" in run_cli(["migrate"], env, tmp_path)
    assert "up to date" in run_cli(["migrate"], env, tmp_path)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc(["edge", "--port", str(port)], env, tmp_path / "edge.log")
    worker = Proc(["worker"], env, tmp_path / "worker.log")
    try:
        edge.wait_healthy(base)
        send_scenario(base)
        report = wait_report(base, "12345", EXPECTED_ROWS, timeout=90)
        assert report["visitors"] == 2
        # the worker's /metrics counts every outcome: the repeated legacy transaction merged into its
        # conversion, rows written, batches committed (by stage)
        metrics = worker_metrics(int(env["TRACKPIPE_WORKER_METRICS_PORT"]))
        merged = sample(
            "trackpipe_processing_outcomes_total", stage="conversion", outcome="merged", reason=""
        )
        assert metrics[merged] >= 1
        assert metrics[sample("trackpipe_processing_rows_total", table="events")] >= 5
        assert metrics[sample("trackpipe_processing_batches_total", stage="visitor", result="committed")] >= 1
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- edge ---\n{edge.tail()}\n--- worker ---\n{worker.tail()}") from None
    finally:
        edge.stop()
        worker.stop()
