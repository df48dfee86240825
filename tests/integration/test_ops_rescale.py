"""``trackpipe ops rescale`` on the real broker (issue 15): under a steady load through an edge, with two
workers, the pipeline grows 4 -> 8 partitions, is finalized, then shrinks 8 -> 2. Every request is
answered 2xx (or the click's 302); ``ops status`` shows the rescale's phases while it runs and a clean
layout after; and the final conversions, revenue, attribution credits and sessions in ClickHouse equal
a clean single-layout run of the same events — the pure processing cores over every event the edge
accepted, read back from each generation's events topic in order — so nothing was lost, nothing was
counted twice, and each visitor's events were processed in order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from processors.pipeline import ConversionPipeline
from schemas.envelope import decode_envelope
from schemas.events import Event
from sinks.processing_reports import processing_report
from sinks.server_backend import ServerBackend
from tests.integration.test_inputs_edge import ADMIN_KEY
from tests.integration.test_outbound_embedded import wait_for
from tests.integration.test_processing_scenario import _summary
from tests.rescale_load import Load
from tests.scenario import Proc, cli, free_port, run_cli
from trackpipe.outbound.kafka_read import read_partition

pytestmark = pytest.mark.integration


def _status(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    return json.loads(cli(["ops", "status", "--json"], env, cwd).stdout)


def _phases(bootstrap: str, topic: str) -> list[str]:
    """The phases the layout record went through, in order (the layout topic's history)."""

    async def read() -> list[str]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            seen: list[str] = []
            records: list[tuple[bytes, bytes | None]] = []
            await read_partition(consumer, TopicPartition(topic, 0), lambda k, v: records.append((k, v)))
            for key, value in records:
                if key == b"layout" and value is not None:
                    seen.append(json.loads(value)["phase"])
            return seen
        finally:
            await consumer.stop()

    return asyncio.run(read())


async def _events_of(bootstrap: str, topic: str, partitions: int) -> list[Event]:
    """Every event of ``topic``, partition by partition in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        out: list[Event] = []
        for p in range(partitions):
            await read_partition(
                consumer, TopicPartition(topic, p), lambda _k, v: out.extend(decode_envelope(v or b""))
            )
        return out
    finally:
        await consumer.stop()


def _sessions(rows: list[Any]) -> set[tuple[str, str, str, int]]:
    latest: dict[str, Any] = {}
    for r in rows:
        if r.session_id not in latest or r.version >= latest[r.session_id].version:
            latest[r.session_id] = r
    return {
        (
            r.visitor_id,
            r.started_at.isoformat(timespec="milliseconds"),
            r.ended_at.isoformat(timespec="milliseconds"),
            r.events,
        )
        for r in latest.values()
        if not r.is_deleted
    }


def _stored_sessions(backend: ServerBackend) -> set[tuple[str, str, str, int]]:
    rows = backend.query(
        "SELECT visitor_id, started_at, ended_at, events FROM sessions FINAL"
        " WHERE project_id = 'resc' AND is_deleted = 0"
    )
    return {
        (v, s.replace(tzinfo=UTC).isoformat(timespec="milliseconds"),
         e.replace(tzinfo=UTC).isoformat(timespec="milliseconds"), int(n))
        for v, s, e, n in rows
    }  # fmt: skip


def _stored_summary(backend: ServerBackend) -> dict[str, Any]:
    end = datetime.now(UTC) + timedelta(days=1)
    rep = processing_report(backend, "resc", end - timedelta(days=3), end)
    return {
        "goals": {g.goal_id: (g.conversions, round(float(g.revenue), 4)) for g in rep.goals if g.conversions},
        "credits": {(c.goal_id, c.model, c.dimension): round(float(c.credit), 6) for c in rep.credits},
    }


@pytest.mark.timeout(900)  # two rescales under load: about 75 s on an idle 2-core machine
def test_grow_4_to_8_then_shrink_to_2_under_load_equals_a_clean_run(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    events_topic = unique_name("events")
    env = {
        "TRACKPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRACKPIPE_KAFKA_TOPIC": events_topic,
        "TRACKPIPE_PARTITIONS": "4",
        "TRACKPIPE_CLICKHOUSE_HOST": clickhouse_server.host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(clickhouse_server.http_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": ch_database,
        "TRACKPIPE_WORKER_APP_ID": unique_name("worker"),
        "TRACKPIPE_WORKER_BATCH_WITHIN_S": "0.2",
        "TRACKPIPE_WORKER_SESSION_TIMEOUT_S": "6",
        "TRACKPIPE_WORKER_HEARTBEAT_INTERVAL_S": "1",
        "TRACKPIPE_WORKER_METRICS_PORT": "0",
        "TRACKPIPE_ADMIN_KEY": ADMIN_KEY,
        "TRACKPIPE_EDGE__RATE_LIMIT_PER_MINUTE": "0",
    }
    run_cli(["topics", "create"], env, tmp_path)
    run_cli(["migrate"], env, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc(["edge", "--port", str(port)], env, tmp_path / "edge.log")
    workers = [Proc(["worker"], env, tmp_path / f"worker{i}.log") for i in (1, 2)]
    backend = ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database)
    load: Load | None = None
    try:
        edge.wait_healthy(base)
        load = Load(base).start()
        wait_for("rows from the first generation", lambda: backend.query(
            "SELECT count() FROM events_raw")[0][0] > 50, 120)  # fmt: skip

        accepted: list[Event] = []
        previous = 4
        for step, partitions in enumerate((8, 2), start=1):
            new_events = f"{events_topic}.g{step}"
            old_events = events_topic if step == 1 else f"{events_topic}.g{step - 1}"
            args = ["ops", "rescale", "--partitions", str(partitions), "--json", "--timeout", "300"]
            if step == 1:
                # ops status during a rescale, deterministically: the old generation's workers are
                # paused, so the rescale waits in its drain until they go on
                for w in workers:
                    w.p.send_signal(signal.SIGSTOP)
                rescale = subprocess.Popen(
                    [sys.executable, "-m", "trackpipe.cli", *args],
                    env={**os.environ, **env},
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                try:
                    during = wait_for(
                        "the rescale draining",
                        lambda: (r := _status(env, tmp_path))["layout"]["phase"] == "draining" and r,
                        120,
                    )
                finally:
                    for w in workers:
                        w.p.send_signal(signal.SIGCONT)
                stdout, _ = rescale.communicate(timeout=600)
                out = subprocess.CompletedProcess(rescale.args, rescale.returncode, stdout, "")
                lay = during["layout"]
                assert lay["current"] == {"generation": 0, "partitions": 4}, lay
                assert lay["target"] == {"generation": 1, "partitions": 8}, lay
                assert set(lay["fence"]) == {"0", "1", "2", "3"}
                topics = {t["topic"]: t["partitions"] for t in during["topics"]}
                assert topics[old_events] == 4 and topics[new_events] == 8
                old_group = next(g for g in during["groups"] if g["role"] == "processing g0 (current)")
                assert sum(p["lag"] for p in old_group["partitions"] if p["topic"] == old_events) > 0
                assert any("rescale is in progress" in p["what"] for p in during["problems"])
            else:
                out = cli(args, env, tmp_path, timeout=600)
            assert out.returncode == 0, out.stdout + out.stderr
            report = json.loads(out.stdout.strip().splitlines()[-1])
            assert report["target"] == {"generation": step, "partitions": partitions}
            assert report["pause_s"] > 0 and set(report["keys_moved"]) == {
                "visitor", "click", "fingerprint", "conversion"}  # fmt: skip
            # the layout went through the protocol's phases, in order
            phases = _phases(kafka_bootstrap, f"{events_topic}.layout")
            assert phases[-5:] == ["stable", "switching", "draining", "moving", "stable"], phases
            # ... and after: the new generation live, the old one kept, processing caught up
            after = _status(env, tmp_path)
            assert after["layout"]["current"] == {"generation": step, "partitions": partitions}
            assert after["layout"]["previous"]["generation"] == step - 1
            assert after["layout"]["phase"] == "stable"
            assert [p for p in after["problems"] if p["severity"] == "error"] == []
            group = next(g for g in after["groups"] if g["role"] == f"processing g{step} (current)")
            assert group["members"], group
            assert {p["topic"] for p in group["partitions"]} >= {new_events}
            assert len([p for p in group["partitions"] if p["topic"] == new_events]) == partitions
            # the retired generation's events are final: keep them for the clean run, then finalize
            accepted += asyncio.run(_events_of(kafka_bootstrap, old_events, previous))
            previous = partitions
            fin = cli(["ops", "finalize"], env, tmp_path)
            assert fin.returncode == 0 and old_events in fin.stdout, fin.stdout + fin.stderr

        load.stop()
        assert load.failures == [], load.failures[:10]
        assert load.requests > 200
        for proc in (edge, *workers):
            assert proc.p.poll() is None, proc.tail()
        live = f"{events_topic}.g2"

        last: dict[str, int] = {}

        def caught_up() -> list[Event] | None:
            everything = accepted + asyncio.run(_events_of(kafka_bootstrap, live, 2))
            ids = {e.event_id for e in everything}
            stored = {r[0] for r in backend.query("SELECT DISTINCT event_id FROM events_raw")}
            last.update(accepted=len(ids), stored=len(stored), missing=len(ids - stored),
                        unknown=len(stored - ids))  # fmt: skip
            return everything if stored == ids else None

        try:
            everything = wait_for("every accepted event stored", caught_up, 180)
        except AssertionError:
            raise AssertionError(f"accepted events vs events_raw: {last}") from None
        assert len(everything) == len({e.event_id for e in everything})  # none produced twice
        everything.sort(key=lambda e: e.received_at)  # per visitor: the order the edge accepted them
        clean = ConversionPipeline().process_events(everything).batch
        expected = _summary(list(clean.conversions))
        assert expected["goals"], expected  # the load made conversions
        got = wait_for(
            "the processed results", lambda: (s := _stored_summary(backend)) == expected and s, 120
        )
        assert got == expected
        assert _stored_sessions(backend) == _sessions(list(clean.sessions))
    except AssertionError as exc:
        logs = "\n".join(f"--- {p.log_path.name} ---\n{p.tail(3000)}" for p in (edge, *workers))
        raise AssertionError(f"{exc}\n{logs}") from None
    finally:
        if load is not None:
            load.stop()
        for p in (edge, *workers):
            p.stop()
