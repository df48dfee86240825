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
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
from aiohttp import web

from ingest.app import build_edge_app
from ingest.config_file_store import FileConfigStore
from processors.pipeline import ConversionPipeline, SourceRecord
from processors.state_sqlite import SqliteState
from sinks.backend import BackendError
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
    ):
        self.log = log_
        self.offsets = offsets
        self.pipeline = pipeline
        self.sink = sink
        self.deadletter = deadletter
        self.executor = executor
        self.max_records = max_records
        self.flush_wait_s = flush_wait_s
        self.appended = asyncio.Event()
        committed = pipeline.committed_offset()  # state and offset are committed together
        self.position = offsets.load() if committed is None else committed
        self.last_error: str | None = None
        self._stopping = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while not self._stopping:
            records = self.log.read(self.position, max_records=self.max_records)
            if not records:
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
            result = self.pipeline.process_records(
                SourceRecord("local", r.partition, r.offset, r.payload) for r in records
            )
            token = f"local:{records[0].offset}-{records[-1].next_offset}"
            try:
                await loop.run_in_executor(self.executor, self.sink.write_batch, result.batch, token)
            except BackendError as exc:
                self.pipeline.discard()  # the batch is processed again from the committed state
                # Backpressure: keep the offset, retry the same range. Nothing is dropped.
                self.last_error = f"{exc} (retriable={exc.retriable})"
                log.error("ClickHouse write failed, retrying in %.1fs: %s", backoff, self.last_error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.1
            self.last_error = None
            if result.dead_letters:
                self.deadletter.append_many(
                    [
                        (0, orjson.dumps({"reason": d.reason, "raw": d.raw.decode("utf-8", "replace")}))
                        for d in result.dead_letters
                    ]
                )
            self.position = records[-1].next_offset
            # stage state + offset, one SQLite transaction (fsync: off the event loop)
            await loop.run_in_executor(self.executor, self.pipeline.commit, self.position)
            self.offsets.commit(self.position)
            self.log.delete_before(self.position)

    def stop(self) -> None:
        self._stopping = True
        self.appended.set()


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
        task = asyncio.create_task(runner.run(), name="embedded-runner")
        try:
            yield
        finally:
            runner.stop()
            await task
            runner.log.close()
            runner.deadletter.close()
            await loop.run_in_executor(executor, backend.close)
            executor.shutdown(wait=True)

    def publisher() -> LocalLogPublisher:
        runner = state["runner"]
        assert isinstance(runner, EmbeddedRunner)
        return LocalLogPublisher(runner.log, settings.partitions, on_append=runner.appended)

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
    )
