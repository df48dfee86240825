"""The rescale tests' pipeline (issue 15): an edge and workers on a Kafka + ClickHouse pipeline under a
steady load (tests/rescale_load.py), what they observe of a rescale (the layout topic's phases, ``ops
status``) and the end-state check: ``events_raw`` holds exactly the events the edges accepted (read back
from every generation's events topic), and the conversions, revenue, attribution credits and sessions
equal the pure processing cores run over all of them — nothing lost, nothing counted twice, each
visitor's events processed in order."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def pipeline_env(
    kafka_bootstrap: str,
    clickhouse_server: Any,
    ch_database: str,
    unique_name: Callable[..., str],
    partitions: int,
) -> dict[str, str]:
    """The settings of a distributed pipeline of its own (events topic, worker group, database)."""
    return {
        "TRACKPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRACKPIPE_KAFKA_TOPIC": unique_name("events"),
        "TRACKPIPE_PARTITIONS": str(partitions),
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


class Pipeline:
    """``topics create`` + ``migrate``, then one edge and ``workers`` workers (``start``), each with its log
    in ``tmp_path``; ``load`` sends the steady traffic once ``start_load`` is called."""

    def __init__(self, tmp_path: Path, env: dict[str, str], clickhouse_server: Any, workers: int = 2):
        self.tmp_path, self.env = tmp_path, env
        self.events_topic = env["TRACKPIPE_KAFKA_TOPIC"]
        self.bootstrap = env["TRACKPIPE_KAFKA_BOOTSTRAP"]
        self.n_workers = workers
        self.backend = ServerBackend(clickhouse_server.host, clickhouse_server.http_port, env[
            "TRACKPIPE_CLICKHOUSE_DATABASE"])  # fmt: skip
        self.base = ""
        self.edge: Proc | None = None
        self.workers: list[Proc] = []
        self.load: Load | None = None

    def events_topic_of(self, generation: int) -> str:
        return self.events_topic if generation == 0 else f"{self.events_topic}.g{generation}"

    @property
    def layout_topic(self) -> str:
        return f"{self.events_topic}.layout"

    def start(self) -> Pipeline:
        run_cli(["topics", "create"], self.env, self.tmp_path)
        run_cli(["migrate"], self.env, self.tmp_path)
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.edge = Proc(["edge", "--port", str(port)], self.env, self.tmp_path / "edge.log")
        self.workers = [
            Proc(["worker"], self.env, self.tmp_path / f"worker{i}.log") for i in range(1, self.n_workers + 1)
        ]
        self.edge.wait_healthy(self.base)
        return self

    def start_load(self, rate_per_s: float = 25.0, visitors: int = 120, rows: int = 50) -> Load:
        """The steady traffic, running once the first generation has stored ``rows`` events."""
        self.load = Load(self.base, rate_per_s, visitors).start()
        wait_for("rows from the first generation", lambda: self.backend.query(
            "SELECT count() FROM events_raw")[0][0] > rows, 120)  # fmt: skip
        return self.load

    def procs(self) -> list[Proc]:
        return [p for p in (self.edge, *self.workers) if p is not None]

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name} ---\n{p.tail(3000)}" for p in self.procs())

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
        for p in self.procs():
            p.stop(signal.SIGTERM)


def status(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    return json.loads(cli(["ops", "status", "--json"], env, cwd).stdout)


def phases(bootstrap: str, topic: str) -> list[str]:
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


def wait_phase(bootstrap: str, topic: str, phase: str, timeout: float = 120) -> None:
    """Until the layout record on ``topic`` is in ``phase``."""
    wait_for(f"the layout in phase {phase}", lambda: phases(bootstrap, topic)[-1:] == [phase], timeout)


async def events_of(bootstrap: str, topic: str, partitions: int) -> list[Event]:
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


def sessions_of(rows: list[Any]) -> set[tuple[str, str, str, int]]:
    """The live sessions among the processing cores' session rows (latest version of each)."""
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


def stored_sessions(backend: ServerBackend) -> set[tuple[str, str, str, int]]:
    rows = backend.query(
        "SELECT visitor_id, started_at, ended_at, events FROM sessions FINAL"
        " WHERE project_id = 'resc' AND is_deleted = 0"
    )
    return {
        (v, s.replace(tzinfo=UTC).isoformat(timespec="milliseconds"),
         e.replace(tzinfo=UTC).isoformat(timespec="milliseconds"), int(n))
        for v, s, e, n in rows
    }  # fmt: skip


def stored_summary(backend: ServerBackend) -> dict[str, Any]:
    end = datetime.now(UTC) + timedelta(days=1)
    rep = processing_report(backend, "resc", end - timedelta(days=3), end)
    return {
        "goals": {g.goal_id: (g.conversions, round(float(g.revenue), 4)) for g in rep.goals if g.conversions},
        "credits": {(c.goal_id, c.model, c.dimension): round(float(c.credit), 6) for c in rep.credits},
    }


def assert_exact(
    bootstrap: str, backend: ServerBackend, accepted: list[Event], live: list[tuple[str, int]]
) -> list[Event]:
    """The end state: ``events_raw`` holds exactly ``accepted`` plus every event of the ``live`` topics
    (``(topic, partitions)``, read now), none of them produced twice; the stored conversions, revenue,
    credits and sessions equal a clean run of the pure cores over all of them. Returns the events."""
    last: dict[str, int] = {}

    def caught_up() -> list[Event] | None:
        everything = list(accepted)
        for topic, partitions in live:
            everything += asyncio.run(events_of(bootstrap, topic, partitions))
        ids = {e.event_id for e in everything}
        stored = {r[0] for r in backend.query("SELECT DISTINCT event_id FROM events_raw")}
        last.update(accepted=len(ids), stored=len(stored), missing=len(ids - stored),
                    unknown=len(stored - ids))  # fmt: skip
        return everything if stored == ids else None

    try:
        everything: list[Event] = wait_for("every accepted event stored", caught_up, 180)
    except AssertionError:
        raise AssertionError(f"accepted events vs events_raw: {last}") from None
    assert len(everything) == len({e.event_id for e in everything})  # none produced twice
    everything.sort(key=lambda e: e.received_at)  # per visitor: the order the edge accepted them
    clean = ConversionPipeline().process_events(everything).batch
    expected = _summary(list(clean.conversions))
    assert expected["goals"], expected  # the load made conversions
    last_summary: list[dict[str, Any]] = []

    def summary_matches() -> dict[str, Any] | None:
        last_summary[:] = [stored_summary(backend)]
        return last_summary[0] if last_summary[0] == expected else None

    try:
        wait_for("the processed results", summary_matches, 120)
    except AssertionError:
        raise AssertionError(f"stored {last_summary} != clean run {expected}") from None
    assert stored_sessions(backend) == sessions_of(list(clean.sessions))
    return everything
