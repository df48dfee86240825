"""``trackpipe ops status`` on the real broker (issue 15): the layout and its verdict before and after
``topics create``, the processing group's members and lag while a worker runs, and the refusal of
``trackpipe worker`` / ``trackpipe edge`` (and ``topics create``) on a layout changed outside trackpipe."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from tests.integration.test_outbound_distributed import _env, pipeline
from tests.integration.test_outbound_embedded import wait_for
from tests.scenario import cli, free_port, run_cli, send_scenario

pytestmark = pytest.mark.integration


def _status(env: dict[str, str], cwd: Path) -> tuple[int, dict[str, Any]]:
    out = cli(["ops", "status", "--json"], env, cwd)
    return out.returncode, json.loads(out.stdout)


def test_status_before_and_after_topics_create_and_while_a_worker_runs(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = _env(kafka_bootstrap, clickhouse_server, ch_database, unique_name)
    events = env["TRACKPIPE_KAFKA_TOPIC"]
    code, report = _status(env, tmp_path)
    assert code == 2 and report["verdict"] == "error"
    assert any("missing" in p["what"] and p["fix"] == "trackpipe topics create" for p in report["problems"])
    assert not report["layout_recorded"]

    out = run_cli(["topics", "create"], env, tmp_path)
    assert "layout: generation 0, 3 partitions (written)" in out
    code, report = _status(env, tmp_path)
    assert (code, report["verdict"], report["problems"]) == (0, "ok", [])
    assert report["layout"]["current"] == {"generation": 0, "partitions": 3}
    topics = {t["topic"]: t for t in report["topics"]}
    assert topics[events]["partitions"] == 3 and topics[events]["group"] == "processing g0 (current)"
    assert topics[f"{events}.config"]["partitions"] == 1
    assert topics[f"{events}.deliveries"]["group"] == "outputs"
    text = cli(["ops", "status"], env, tmp_path).stdout
    assert "verdict: ok" in text and "[processing g0 (current)]" in text

    run_cli(["migrate"], env, tmp_path)
    metrics_port = free_port()
    env["TRACKPIPE_WORKER_METRICS_PORT"] = str(metrics_port)
    with pipeline(tmp_path, env) as base:
        send_scenario(base)
        app = env["TRACKPIPE_WORKER_APP_ID"]

        seen: list[Any] = []

        def settled() -> dict[str, Any] | None:
            _, now = _status(env, tmp_path)
            group = next(g for g in now["groups"] if g["group_id"] == app)
            seen[:] = [group]
            input_parts = [p for p in group["partitions"] if p["topic"] == events]
            done = (
                group["members"]
                and sum(p["end"] for p in input_parts) > 0
                and all(p["lag"] == 0 for p in input_parts)
                and all(p["committed"] == p["end"] for p in input_parts if p["end"])
            )
            return group if done else None

        try:
            group = wait_for("the worker's group: members, no lag on the events topic", settled, 120)
        except AssertionError:
            raise AssertionError(f"last seen: {seen}") from None
        assert group["state"] == "Stable"
        owned = {p for m in group["members"] for p in m["partitions"]}
        assert {f"{events}:{i}" for i in range(3)} <= owned  # the one worker owns every input partition

        # the worker's /metrics: lag per stage and partition, for autoscaling (read every 10 s)
        def scraped() -> list[str] | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
                text = r.read().decode()
            lines = [
                line
                for line in text.splitlines()
                if line.startswith("trackpipe_consumer_lag{") and f'group="{app}"' in line
            ]
            visitor = [line for line in lines if 'stage="visitor"' in line and f'topic="{events}"' in line]
            return lines if len(visitor) == 3 and all(line.endswith(" 0.0") for line in visitor) else None

        lines = wait_for("consumer lag on the worker's /metrics", scraped, 60)
        assert {line.split('stage="')[1].split('"')[0] for line in lines} == {
            "visitor",
            "click",
            "fingerprint",
            "conversion",
        }
        assert {p["topic"] for p in group["partitions"]} == {
            events,
            *(f"{app}-{s}" for s in ("visitor", "click", "fingerprint", "conversion")),
        }


async def _grow(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=partitions)})
    finally:
        await admin.close()


def test_worker_edge_and_topics_create_refuse_a_layout_changed_outside_trackpipe(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = _env(kafka_bootstrap, clickhouse_server, ch_database, unique_name)
    events = env["TRACKPIPE_KAFKA_TOPIC"]
    run_cli(["topics", "create"], env, tmp_path)

    # the operator raises the setting only: the layout stays, topics create says how to change it
    more = {**env, "TRACKPIPE_PARTITIONS": "6"}
    out = cli(["topics", "create"], more, tmp_path)
    assert out.returncode == 2 and "trackpipe ops rescale --partitions 6" in out.stderr
    code, report = _status(more, tmp_path)
    assert code == 1 and report["verdict"] == "warning"
    assert "TRACKPIPE_PARTITIONS is 6" in report["problems"][0]["what"]

    # ... then grows the events topic with Kafka's own tools: keys would move away from their state
    asyncio.run(_grow(kafka_bootstrap, events, 6))
    code, report = _status(env, tmp_path)
    assert code == 2
    [problem] = [p for p in report["problems"] if p["severity"] == "error"]
    assert problem["topic"] == events and "has 6 partitions, the layout needs 3" in problem["what"]
    for args in (["worker"], ["edge", "--port", "0"]):
        refused = cli(args, env, tmp_path, timeout=120)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert f"{events}: has 6 partitions, the layout needs 3" in refused.stderr
        assert "fix: trackpipe ops rescale --partitions 6" in refused.stderr
