"""Embedded default: edge + processors + chdb in one process, data under one directory.

    <data_dir>/log/         durable envelope log (LocalLog): the edge answers 2xx after its fsync
    <data_dir>/consumer.offset   how far the processors have written into ClickHouse
    <data_dir>/state.sqlite the processors' state (sessions, clicks, conversions), committed in one
                            transaction with the log offset it describes (authoritative offset)
    <data_dir>/chdb/        embedded ClickHouse data
    <data_dir>/deadletter/  records that could not be decoded or were quarantined, with the reason

The runner reads the log from the committed offset and drives the same batch protocol and pipeline core
the Faust worker drives (processors.batch): it writes the batch with a token naming its offset range, and
only then commits state and offset. A crash between write and commit replays the range, which the
idempotent tables absorb: accepted events count exactly once.

The runner has a thread of its own with its own event loop (``embedded-runner``): log reads, decoding and
processing, the dead-letter appends and the housekeeping fsyncs never hold the edge's event loop, whose
answers (a 2xx after the log's fsync) do not wait for a batch. The runner talks to the edge's loop only
through thread-safe calls: the publisher's wake-up after an append, and the commit callback (delivery and
stream wake-ups), which runs on the edge's loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from ingest.app import build_edge_app
from ingest.config.file_store import FileConfigStore
from ingest.http.common import METRICS
from processors.batch import OutcomeCounts
from processors.pipeline import COUNTING, ConversionPipeline
from processors.runtime.sqlite_state import SqliteState
from schemas.alerts import AlertRule
from schemas.config import StoredAlertRule
from sinks.chdb_backend import ChdbBackend
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.outbound.schedule import Schedule
from sinks.report_retention import apply_retention
from trackpipe.alerting.embedded import AlertStage, EmbeddedAlertStates
from trackpipe.embedded_counting import counting_for, uncommitted_counters
from trackpipe.embedded_runner import EmbeddedRunner
from trackpipe.local_publisher import LocalLogPublisher
from trackpipe.locallog import LocalLog, OffsetStore
from trackpipe.metrics import register_outcomes, register_reports
from trackpipe.outbound import DeliveryLoop, OutboundPlanning, SqliteDueStore, goal_lookup, rule_lookup
from trackpipe.outbound.delivery_log import DeliveryLogObserver
from trackpipe.outbound.loop import sender_for
from trackpipe.outbound.metrics import OutboundCounts, register_outbound
from trackpipe.outbound.sqlite_control import SqliteDeliveryControl
from trackpipe.report_source import BackendReports
from trackpipe.settings import Settings
from trackpipe.stream.sqlite_source import SqliteStreamSource

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "trackpipe"


#: The running app's runner (operators' tools and tests look at its position and health).
RUNNER = web.AppKey("embedded_runner", EmbeddedRunner)


def build_embedded_app(settings: Settings) -> web.Application:
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chdb")
    state: dict[str, object] = {}
    counts = OutcomeCounts()
    outbound_counts = OutboundCounts()
    stream = SqliteStreamSource(data / "state.sqlite", settings.stream_retention_days * 86_400)
    config_store = FileConfigStore(data / "config.log")
    goal_of = goal_lookup(lambda goal_id: config_store.state.goal(goal_id))
    rule_of = rule_lookup(lambda link_id: config_store.state.link(link_id), settings.outbound.allow_list)
    schedule = Schedule.from_setting(settings.outbound.retry_schedule_s)

    plain_rules: dict[str, tuple[StoredAlertRule, AlertRule]] = {}

    def alert_rules() -> list[AlertRule]:
        """The configured alert rules without their secrets (each converted once per version)."""
        out = []
        for stored in config_store.state.alerts():
            cached = plain_rules.get(stored.id)
            if cached is None or cached[0] is not stored:
                cached = plain_rules[stored.id] = (stored, stored.rule())
            out.append(cached[1])
        return out

    def alert_rule_of(project: str, rule_id: str) -> StoredAlertRule | None:
        found = config_store.state.alert(rule_id)
        return found if found is not None and found.project == project else None

    # a bad setting stops the start

    async def embedded_ctx(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        backend = await loop.run_in_executor(executor, ChdbBackend, str(data / "chdb"), EMBEDDED_DATABASE)
        await loop.run_in_executor(executor, migrate, backend)
        await loop.run_in_executor(executor, apply_retention, backend, settings.retention_days)
        sqlite_state = SqliteState(data / "state.sqlite")
        # the Top-5 counters: kept only in a database counted from its start (trackpipe/embedded_counting)
        counting = await loop.run_in_executor(executor, counting_for, settings, backend, sqlite_state)
        # the delivery log: rows inserted in the background through the chdb executor (issue 13)
        delivery_log = DeliveryLogObserver(lambda: backend, executor)
        deliveries = DeliveryLoop(
            SqliteDueStore(data / "state.sqlite"),
            goal_of,
            sender_for(settings.outbound),
            schedule,
            observers=[delivery_log, outbound_counts],
            rule_of=alert_rule_of,
        )

        def committed() -> None:  # a batch's deliveries and stream messages are durable: wake their readers
            deliveries.wake.set()
            stream.notify()

        pipeline = ConversionPipeline(settings.processing_config(), sqlite_state, counting)
        if pipeline.counting is not None:  # a batch written but not committed before a crash
            step = pipeline.counting
            last = step.last_batch(pipeline.stores[COUNTING])
            step.resend = await loop.run_in_executor(
                executor, uncommitted_counters, backend, step.writer, last
            )
        runner = EmbeddedRunner(
            LocalLog(data / "log"),
            OffsetStore(data / "consumer.offset"),
            pipeline,
            ClickHouseSink(backend),
            LocalLog(data / "deadletter"),
            executor,
            counts=counts,
            outbound=OutboundPlanning(sqlite_state, goal_of, rule_of=rule_of),
            alerts=AlertStage(sqlite_state, alert_rules),
            on_commit=committed,
        )
        state["backend"], state["runner"], state["deliveries"] = backend, runner, deliveries
        state["delivery_log"] = delivery_log
        app[RUNNER] = runner
        try:
            yield
        finally:
            await runner.close()
            runner.log.close()
            runner.deadletter.close()
            await loop.run_in_executor(executor, backend.close)
            executor.shutdown(wait=True)

    def publisher() -> LocalLogPublisher:
        runner = state["runner"]
        assert isinstance(runner, EmbeddedRunner)
        return LocalLogPublisher(runner.log, settings.partitions, on_append=runner.appended)

    def runner_health() -> str | None:
        runner = state.get("runner")
        return runner.health() if isinstance(runner, EmbeddedRunner) else "embedded runner not started"

    def alert_stage() -> AlertStage | None:
        runner = state.get("runner")
        return runner.port.alerts if isinstance(runner, EmbeddedRunner) else None

    def delivery_loop() -> DeliveryLoop | None:
        found = state.get("deliveries")
        return found if isinstance(found, DeliveryLoop) else None

    def backend() -> ChdbBackend:
        found = state["backend"]
        assert isinstance(found, ChdbBackend)
        return found

    app = build_edge_app(
        settings.edge,
        publisher,
        BackendReports(backend, executor),
        extra_cleanup=[embedded_ctx],
        config_store=config_store,
        admin_key=settings.admin_key_value(),
        read_keys=settings.read_keys_value(),
        metrics_key=settings.metrics_key_value(),
        outbound=settings.outbound,
        health_checks=[runner_health],
        deliveries=SqliteDeliveryControl(delivery_loop),
        stream=stream,
        alert_states=EmbeddedAlertStates(alert_stage, data / "state.sqlite"),
    )
    register_outcomes(app[METRICS].registry, counts)  # /metrics: the processors' outcomes too
    register_reports(app[METRICS].registry)
    register_outbound(
        app[METRICS].registry,
        outbound_counts,
        lambda: loop.queue_stats if (loop := delivery_loop()) else None,
    )

    async def processing_ctx(app: web.Application) -> AsyncIterator[None]:
        # Started once the config store is loaded (build_edge_app starts it after ``embedded_ctx``):
        # planning a batch looks its goals up, so no batch may be planned against an empty config.
        runner, deliveries, delivery_log = state["runner"], state["deliveries"], state["delivery_log"]
        assert isinstance(runner, EmbeddedRunner) and isinstance(deliveries, DeliveryLoop)
        assert isinstance(delivery_log, DeliveryLogObserver)
        runner.start()
        await delivery_log.start()
        await deliveries.start()
        try:
            yield
        finally:
            await stream.close()
            await deliveries.close()  # the runner stops in embedded_ctx, after the edge's last flush
            await delivery_log.close()  # its last rows, before embedded_ctx closes the backend

    app.cleanup_ctx.append(processing_ctx)
    return app
