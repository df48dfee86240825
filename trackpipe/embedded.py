"""Embedded default: edge + processors + chdb in one process, data under one directory.

    <data_dir>/log/         durable envelope log (LocalLog): the edge answers 2xx after its fsync
    <data_dir>/consumer.offset   how far the processors have written into ClickHouse
    <data_dir>/state.sqlite the processors' state (sessions, clicks, conversions), committed in one
                            transaction with the log offset it describes (authoritative offset)
    <data_dir>/chdb/        embedded ClickHouse data
    <data_dir>/deadletter/  records that could not be decoded, with the reason

The runner reads the log from the committed offset, runs the same pipeline core the Faust worker runs,
writes the batch with a token naming its offset range, and only then commits the offset. A crash between
write and commit replays the range, which the idempotent tables absorb: accepted events count exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
from aiohttp import web

from ingest.app import build_edge_app
from ingest.config_file_store import FileConfigStore
from processors.pipeline import ConversionPipeline, SourceRecord
from processors.state_sqlite import SqliteState
from sinks.chdb_backend import ChdbBackend
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.report_retention import apply_retention
from trackpipe.local_publisher import LocalLogPublisher
from trackpipe.locallog import LocalLog, OffsetStore
from trackpipe.report_source import BackendReports
from trackpipe.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "trackpipe"


class EmbeddedRunner:
    """Reads the local log from the committed position and drives the pipeline core batch by batch.

    Any fault of a step (a full disk under the SQLite state, the chdb data or the dead-letter log, a
    ClickHouse error, a bug) leaves the committed position and state as they were: the runner logs it,
    reports it through :meth:`health` (so ``/healthz`` answers 503 while processing cannot advance) and
    processes the same range again after a backoff, until it succeeds. It never skips a record and never
    stops by itself."""

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
        max_backoff_s: float = 5.0,
    ):
        self.log = log_
        self.offsets = offsets
        self.pipeline = pipeline
        self.sink = sink
        self.deadletter = deadletter
        self.executor = executor
        self.max_records = max_records
        self.flush_wait_s = flush_wait_s
        self.max_backoff_s = max_backoff_s
        self.appended = asyncio.Event()
        committed = pipeline.committed_offset()  # state and offset are committed together
        self.position = offsets.load() if committed is None else committed
        self.last_error: str | None = None
        self.failing_since: float | None = None
        self.batches_committed = 0
        self._stopping = False
        self._wake = asyncio.Event()  # cuts a backoff short on stop
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="embedded-runner")

    async def close(self) -> None:
        self.stop()
        if self._task is not None:
            await self._task

    def health(self) -> str | None:
        """None while processing can advance; else what stops it (shown by ``/healthz``)."""
        if self._task is not None and self._task.done() and not self._stopping:
            return "embedded runner stopped unexpectedly; see the log"  # run() returns only when stopped
        if self.last_error is None:
            return None
        since = 0.0 if self.failing_since is None else time.monotonic() - self.failing_since
        return (
            f"embedded processing stalled for {since:.0f}s at log offset {self.position}: {self.last_error}"
        )

    async def run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                await self._step()
            except Exception as exc:
                await self._failed(exc, backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = 0.1
            if self.last_error is not None:
                log.warning("embedded processing resumed at log offset %d", self.position)
                self.last_error = self.failing_since = None

    async def _failed(self, exc: Exception, backoff: float) -> None:
        """Forget the batch's uncommitted state (it is processed again from the committed state), say
        why on /healthz and in the log, and wait before the retry."""
        try:
            self.pipeline.discard()
        except Exception:  # a rollback that fails leaves SQLite to roll back at the next transaction
            log.exception("embedded runner: could not discard the failed batch's state")
        retriable = getattr(exc, "retriable", None)
        detail = f"{type(exc).__name__}: {exc}" + ("" if retriable is None else f" (retriable={retriable})")
        if detail != self.last_error:
            # once per distinct fault with its traceback; repeats of it only as warnings
            log.error(
                "embedded processing failed at log offset %d, retrying: %s",
                self.position,
                detail,
                exc_info=exc,
            )
        else:
            log.warning("embedded processing still failing, retry in %.1fs: %s", backoff, detail)
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = detail
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=backoff)
        except TimeoutError:
            pass

    async def _step(self) -> None:
        """One batch: read, process, store, dead-letter, commit state + position. Raises on any fault
        before the commit (nothing of the batch is then committed)."""
        loop = asyncio.get_running_loop()
        records = self.log.read(self.position, max_records=self.max_records)
        if not records:
            self.appended.clear()
            try:
                await asyncio.wait_for(self.appended.wait(), timeout=0.5)
            except TimeoutError:
                pass
            return
        if len(records) < self.max_records and self.flush_wait_s > 0:
            # Let a few more linger cycles arrive: fewer, larger inserts (fewer ClickHouse parts).
            await asyncio.sleep(self.flush_wait_s)
            records = self.log.read(self.position, max_records=self.max_records)
        result = self.pipeline.process_records(
            SourceRecord("local", r.partition, r.offset, r.payload) for r in records
        )
        token = f"local:{records[0].offset}-{records[-1].next_offset}"
        # Backpressure: a failed write keeps the position; the same range is retried. Nothing is dropped.
        await loop.run_in_executor(self.executor, self.sink.write_batch, result.batch, token)
        if result.dead_letters:
            # Written before the commit: a fault after this line retries the batch, so a dead letter may
            # be written twice, never lost.
            self.deadletter.append_many(
                [
                    (0, orjson.dumps({"reason": d.reason, "raw": d.raw.decode("utf-8", "replace")}))
                    for d in result.dead_letters
                ]
            )
        end = records[-1].next_offset
        # stage state + offset, one SQLite transaction (fsync: off the event loop)
        await loop.run_in_executor(self.executor, self.pipeline.commit, end)
        self.position = end
        self.batches_committed += 1
        self._after_commit()

    def _after_commit(self) -> None:
        """Housekeeping that the committed SQLite offset makes optional: a failure here only delays it."""
        try:
            self.offsets.commit(self.position)  # a hint for tools; the SQLite offset is authoritative
            self.log.delete_before(self.position)
        except OSError as exc:
            log.warning("embedded runner: housekeeping after offset %d failed: %s", self.position, exc)

    def stop(self) -> None:
        self._stopping = True
        self.appended.set()
        self._wake.set()


#: The running app's runner (operators' tools and tests look at its position and health).
RUNNER = web.AppKey("embedded_runner", EmbeddedRunner)


def build_embedded_app(settings: Settings) -> web.Application:
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chdb")
    state: dict[str, object] = {}

    async def embedded_ctx(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        backend = await loop.run_in_executor(executor, ChdbBackend, str(data / "chdb"), EMBEDDED_DATABASE)
        await loop.run_in_executor(executor, migrate, backend)
        await loop.run_in_executor(executor, apply_retention, backend, settings.retention_days)
        runner = EmbeddedRunner(
            LocalLog(data / "log"),
            OffsetStore(data / "consumer.offset"),
            ConversionPipeline(settings.processing_config(), SqliteState(data / "state.sqlite")),
            ClickHouseSink(backend),
            LocalLog(data / "deadletter"),
            executor,
        )
        state["backend"], state["runner"] = backend, runner
        app[RUNNER] = runner
        runner.start()
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

    def backend() -> ChdbBackend:
        found = state["backend"]
        assert isinstance(found, ChdbBackend)
        return found

    return build_edge_app(
        settings.edge,
        publisher,
        BackendReports(backend, executor),
        extra_cleanup=[embedded_ctx],
        config_store=FileConfigStore(data / "config.log"),
        admin_key=settings.admin_key_value(),
        health_checks=[runner_health],
    )
