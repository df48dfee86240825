"""The embedded mode's runner: reads the local log and drives the batch protocol (processors.batch) on a
thread of its own (see :mod:`trackpipe.embedded`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import orjson

from processors.batch import BatchRunner, OutcomeCounts, RetryPolicy
from processors.outcome import DeadLetter
from processors.pipeline import BatchResult, ConversionPipeline, SourceRecord
from schemas.rows import ProcessedBatch
from sinks.clickhouse_sink import ClickHouseSink
from trackpipe.alerting.embedded import AlertStage
from trackpipe.locallog import LocalLog, LogRecord, OffsetStore
from trackpipe.outbound import OutboundPlanning

log = logging.getLogger(__name__)

#: The interpreter's thread switch interval while a runner runs (bench stage e2e, ``embedded.*``: 0.5 ms
#: against the default 5 ms lowered the edge's median latency during a backlog about fourfold).
SWITCH_INTERVAL_S = 0.0005


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
        self.appended = Wake()
        committed = pipeline.committed_offset()  # state and offset are committed together
        self.position = offsets.load() if committed is None else committed
        self.counts = counts if counts is not None else OutcomeCounts()
        self.after_commit = on_commit
        port = self.port = EmbeddedPort(
            pipeline, sink, deadletter, executor, self._committed, outbound, alerts
        )
        self.batches = BatchRunner(port, "embedded", self.counts, retry)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the runner thread's
        self._task: asyncio.Task[None] | None = None  # run(), on the runner thread's loop
        self._edge_loop: asyncio.AbstractEventLoop | None = None  # where after_commit runs

    def start(self) -> None:
        """Start the runner thread (called on the edge's event loop: ``after_commit`` runs there)."""
        self._edge_loop = asyncio.get_running_loop()
        # The runner's thread is CPU-bound Python: the edge's thread, when it wants the GIL back (a request
        # arrived, an fsync returned), waits up to the switch interval (5 ms by default) each time.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(started,), name="embedded-runner", daemon=True
        )
        self._thread.start()
        started.wait()  # its loop and task exist: stop() and close() can reach them

    def _thread_main(self, started: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.appended.bind(loop)
        self._task = loop.create_task(self.run(), name="embedded-runner")
        started.set()
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            log.warning("embedded runner: cancelled after the stop's grace time (the batch runs again)")
        except BaseException:
            log.exception("embedded runner stopped")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            self.appended.bind(None)
            loop.close()

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def close(self, grace_s: float = 10.0) -> None:
        """Stop after the batch in hand (a batch still failing after ``grace_s`` is abandoned uncommitted:
        it runs again at the next start)."""
        self.stop()
        thread = self._thread
        if thread is None:
            return
        edge = asyncio.get_running_loop()
        await edge.run_in_executor(None, thread.join, grace_s)
        if thread.is_alive():
            loop, task = self._loop, self._task
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to cancel
                    loop.call_soon_threadsafe(task.cancel)
            await edge.run_in_executor(None, thread.join, grace_s)

    def health(self) -> str | None:
        """None while processing can advance; else what stops it (shown by ``/healthz``)."""
        if self._thread is not None and not self._thread.is_alive() and not self._stopping:
            return "embedded runner stopped unexpectedly; see the log"  # run() returns only when stopped
        problem = self.batches.health()
        return None if problem is None else f"{problem} (log offset {self.position})"

    async def run(self) -> None:
        """The runner's loop (on its own thread's event loop, see :meth:`start`)."""
        event = self.appended.event
        while not self._stopping:
            records = self.log.read(self.position, max_records=self.max_records)
            if not records:
                await self._idle_tick()
                event.clear()
                if self._stopping:
                    break
                records = self.log.read(self.position, max_records=self.max_records)
                if not records:  # an append between the read and the clear set the event: not missed
                    try:
                        await asyncio.wait_for(event.wait(), timeout=0.5)
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
            self._notify_edge()

    def _notify_edge(self) -> None:
        """``after_commit`` on the edge's loop (it wakes the edge's readers: deliveries, stream)."""
        if self.after_commit is None or self._edge_loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the edge's loop is closed: nobody left to wake
            self._edge_loop.call_soon_threadsafe(self.after_commit)

    def _committed(self, position: int) -> None:
        """After each committed (sub-)batch: the position moves; housekeeping that the SQLite offset makes
        optional follows, and its failure only delays it."""
        self.position = position
        self._notify_edge()
        try:
            self.offsets.commit(position)  # a hint for tools; the SQLite offset is authoritative
            self.log.delete_before(position)
        except OSError as exc:
            log.warning("embedded runner: housekeeping after offset %d failed: %s", position, exc)

    def stop(self) -> None:
        self._stopping = True
        self.appended.set()


class Wake:
    """The runner's wake-up after an append: an :class:`asyncio.Event` of the runner thread's loop that any
    thread may set (the edge's publisher sets it on the edge's loop)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if loop is not None:
            self.event = asyncio.Event()  # bound to the loop that first waits on it
        self._loop = loop

    def set(self) -> None:
        loop = self._loop
        if loop is None or self.event.is_set():  # set: the runner reads the log before it waits again
            return
        with contextlib.suppress(RuntimeError):  # the runner's loop closed meanwhile
            loop.call_soon_threadsafe(self.event.set)
