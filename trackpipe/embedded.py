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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
from aiohttp import web

from ingest.app import build_edge_app
from ingest.config.file_store import FileConfigStore
from ingest.http.common import METRICS
from processors.batch import BatchRunner, OutcomeCounts, RetryPolicy
from processors.outcome import DeadLetter
from processors.pipeline import BatchResult, ConversionPipeline, SourceRecord
from processors.runtime.sqlite_state import SqliteState
from schemas.alerts import AlertRule
from schemas.config import StoredAlertRule
from schemas.rows import ProcessedBatch
from sinks.chdb_backend import ChdbBackend
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.outbound.schedule import Schedule
from sinks.report_retention import apply_retention
from trackpipe.alerting.embedded import AlertStage, EmbeddedAlertStates
from trackpipe.local_publisher import LocalLogPublisher
from trackpipe.locallog import LocalLog, LogRecord, OffsetStore
from trackpipe.metrics import register_outcomes
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


class EmbeddedPort:
    """The embedded mode's side of the batch protocol (processors.batch): records of the local log, state
    and position in SQLite (one transaction), dead letters in their own local log."""

    def __init__(
        self,
        pipeline: ConversionPipeline,
        sink: ClickHouseSink,
        deadletter: LocalLog,
        executor: ThreadPoolExecutor,
        on_commit: Callable[[int], None],
        outbound: OutboundPlanning | None = None,
        alerts: AlertStage | None = None,
    ):
        self.pipeline = pipeline
        self.sink = sink
        self.deadletter = deadletter
        self.executor = executor
        self.on_commit = on_commit
        self.outbound = outbound
        self.alerts = alerts

    def process(self, records: Sequence[LogRecord]) -> BatchResult:
        return self.pipeline.process_records(
            SourceRecord("local", r.partition, r.offset, r.payload) for r in records
        )

    def token(self, records: Sequence[LogRecord]) -> str:
        return f"local:{records[0].offset}-{records[-1].next_offset}"

    def raw(self, record: LogRecord) -> bytes:
        return record.payload

    async def write(self, rows: ProcessedBatch, token: str) -> None:
        await asyncio.get_running_loop().run_in_executor(self.executor, self.sink.write_batch, rows, token)

    async def deliver(self, work: BatchResult) -> None:
        # Written before the commit: a fault after this retries the batch, so a dead letter may be
        # written twice, never lost.
        await self.quarantine(work.dead_letters)
        if self.outbound is not None and work.rows.conversions:
            # goal webhooks and S2S postbacks: digests and due deliveries join the state transaction
            # that commit() closes (a failure before it rolls them back; see trackpipe/outbound.py)
            await asyncio.get_running_loop().run_in_executor(
                self.executor, self.outbound.stage, work.rows.conversions
            )
        if self.alerts is not None:
            # alert rules: snapshots, notifications and stream messages join the same transaction
            # (also for a batch of dead letters only: the rules' clock moves with every batch)
            await asyncio.get_running_loop().run_in_executor(
                self.executor, self.alerts.stage, work.rows.events, work.rows.conversions
            )

    async def quarantine(self, letters: Sequence[DeadLetter]) -> None:
        if letters:
            self.deadletter.append_many([(0, dead_letter_record(d)) for d in letters])

    async def commit(self, records: Sequence[LogRecord]) -> None:
        end = records[-1].next_offset
        # stage state + offset, one SQLite transaction (fsync: off the event loop)
        await asyncio.get_running_loop().run_in_executor(self.executor, self.pipeline.commit, end)
        self.on_commit(end)

    def discard(self) -> None:
        self.pipeline.discard()
        if self.alerts is not None:
            self.alerts.discard()

    async def tick(self) -> None:
        """Between batches: alert rules advance with the clock (silent projects too)."""
        if self.alerts is not None:
            await asyncio.get_running_loop().run_in_executor(self.executor, self.alerts.tick)


def dead_letter_record(letter: DeadLetter) -> bytes:
    """A dead letter in the local dead-letter log: reason, detail and the original bytes (as text)."""
    return orjson.dumps(
        {"reason": str(letter.reason), "detail": letter.detail, "raw": letter.raw.decode("utf-8", "replace")}
    )


class EmbeddedRunner:
    """Reads the local log from the committed position and hands batches to the one batch protocol
    (:class:`processors.batch.BatchRunner`), which the Faust worker drives too.

    A fault of any step (a full disk under the SQLite state, the chdb data or the dead-letter log, a
    ClickHouse error) leaves the committed position and state as they were; the batch is retried after a
    backoff until it succeeds, and :meth:`health` says why (so ``/healthz`` answers 503 while processing
    cannot advance). Records that fail non-retriably are isolated and quarantined to the dead-letter log
    (processors.batch). The runner never stops by itself."""

    def __init__(
        self,
        log_: LocalLog,
        offsets: OffsetStore,
        pipeline: ConversionPipeline,
        sink: ClickHouseSink,
        deadletter: LocalLog,
        executor: ThreadPoolExecutor,
        *,
        max_records: int = 1000,
        flush_wait_s: float = 0.2,
        counts: OutcomeCounts | None = None,
        retry: RetryPolicy | None = None,
        outbound: OutboundPlanning | None = None,
        on_commit: Callable[[], None] | None = None,
        alerts: AlertStage | None = None,
    ):
        self.log = log_
        self.offsets = offsets
        self.deadletter = deadletter
        self.max_records = max_records
        self.flush_wait_s = flush_wait_s
        self.appended = asyncio.Event()
        committed = pipeline.committed_offset()  # state and offset are committed together
        self.position = offsets.load() if committed is None else committed
        self.counts = counts if counts is not None else OutcomeCounts()
        self.after_commit = on_commit
        port = self.port = EmbeddedPort(
            pipeline, sink, deadletter, executor, self._committed, outbound, alerts
        )
        self.batches = BatchRunner(port, "embedded", self.counts, retry)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="embedded-runner")

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop after the batch in hand (a batch still failing after ``grace_s`` is abandoned uncommitted:
        it runs again at the next start)."""
        self.stop()
        if self._task is None:
            return
        done, _ = await asyncio.wait([self._task], timeout=grace_s)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def health(self) -> str | None:
        """None while processing can advance; else what stops it (shown by ``/healthz``)."""
        if self._task is not None and self._task.done() and not self._stopping:
            return "embedded runner stopped unexpectedly; see the log"  # run() returns only when stopped
        problem = self.batches.health()
        return None if problem is None else f"{problem} (log offset {self.position})"

    async def run(self) -> None:
        while not self._stopping:
            records = self.log.read(self.position, max_records=self.max_records)
            if not records:
                await self._idle_tick()
                self.appended.clear()
                try:
                    await asyncio.wait_for(self.appended.wait(), timeout=0.5)
                except TimeoutError:
                    pass
                continue
            if len(records) < self.max_records and self.flush_wait_s > 0:
                # Let a few more linger cycles arrive: fewer, larger inserts (fewer ClickHouse parts).
                await asyncio.sleep(self.flush_wait_s)
                records = self.log.read(self.position, max_records=self.max_records)
            await self.batches.run(records)

    async def _idle_tick(self) -> None:
        try:
            await self.port.tick()
        except Exception:  # retried at the next idle moment; batches are not held up by it
            log.exception("embedded runner: alert tick failed")
        else:
            if self.after_commit is not None:
                self.after_commit()

    def _committed(self, position: int) -> None:
        """After each committed (sub-)batch: the position moves; housekeeping that the SQLite offset makes
        optional follows, and its failure only delays it."""
        self.position = position
        if self.after_commit is not None:
            self.after_commit()
        try:
            self.offsets.commit(position)  # a hint for tools; the SQLite offset is authoritative
            self.log.delete_before(position)
        except OSError as exc:
            log.warning("embedded runner: housekeeping after offset %d failed: %s", position, exc)

    def stop(self) -> None:
        self._stopping = True
        self.appended.set()


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

        runner = EmbeddedRunner(
            LocalLog(data / "log"),
            OffsetStore(data / "consumer.offset"),
            ConversionPipeline(settings.processing_config(), sqlite_state),
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
