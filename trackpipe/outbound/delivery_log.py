"""The delivery log writer: an :class:`~trackpipe.outbound.loop.AttemptObserver` that buffers one row per
attempt and inserts them into ClickHouse ``delivery_attempts`` in the background (issue 13).

``attempted`` only appends to a bounded buffer (never blocks, never raises into the loop). A background
task inserts every ``flush_s`` or once ``batch_rows`` are waiting, through the backend in the given
executor (the same ``insert_arrow`` the sink uses, so chdb and a server behave alike), each batch with
its own dedup token so a retried insert is not stored twice. A failed insert keeps its batch and is
retried with a growing pause (up to ``max_pause_s``); while ClickHouse is away the buffer holds at most
``max_rows`` rows, the oldest dropped (counted and logged). The log is a record for operators, not the
deliveries' state: losing rows never changes what is sent.

One per process: ``DeliveryLogObserver(backend_factory, executor)``, ``await start()`` in the running
loop, ``await close()`` at shutdown (a last flush, bounded by ``close_timeout_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import datetime

from sinks.backend import ClickHouseBackend
from sinks.outbound.delivery_log import TABLE, AttemptRow, Planned, attempt_row, attempts_table
from sinks.outbound.schedule import Delivery
from sinks.outbound.sender import AttemptResult
from trackpipe.outbound.loop import DueRow

log = logging.getLogger(__name__)

#: ``insert(rows, dedup_token)``: blocking, run in the executor; raises on failure.
Insert = Callable[[Sequence[AttemptRow], str], None]


def planned_of(row: DueRow) -> Planned:
    return Planned(
        row.id, row.project, row.goal_id, row.link_id, row.event, row.method, row.url, row.created_at
    )


def backend_insert(backend: Callable[[], ClickHouseBackend]) -> Insert:
    def insert(rows: Sequence[AttemptRow], token: str) -> None:
        backend().insert_arrow(TABLE, attempts_table(rows), dedup_token=token)

    return insert


class DeliveryLogObserver:
    def __init__(
        self,
        backend: Callable[[], ClickHouseBackend] | None,
        executor: Executor,
        *,
        flush_s: float = 0.5,
        batch_rows: int = 500,
        max_rows: int = 50_000,
        max_pause_s: float = 30.0,
        close_timeout_s: float = 5.0,
        insert: Insert | None = None,
    ):
        if insert is None:
            if backend is None:
                raise ValueError("a delivery log needs a backend or an insert function")
            insert = backend_insert(backend)
        self._insert = insert
        self._executor = executor
        self.flush_s = flush_s
        self.batch_rows = batch_rows
        self.max_rows = max_rows
        self.max_pause_s = max_pause_s
        self.close_timeout_s = close_timeout_s
        self._rows: deque[AttemptRow] = deque()
        self._batch: tuple[list[AttemptRow], str] | None = None  # taken, not inserted yet (kept on failure)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.inserted = 0
        self.dropped = 0
        self.failures = 0

    # -- AttemptObserver

    def attempted(
        self,
        row: DueRow,
        new: Delivery,
        result: AttemptResult | None,
        at: datetime,
        dead_reason: str | None,
    ) -> None:
        self.add(attempt_row(planned_of(row), new, result, at, dead_reason))

    def add(self, entry: AttemptRow) -> None:
        self._rows.append(entry)
        held = len(self._rows) + (len(self._batch[0]) if self._batch else 0)
        if held > self.max_rows:
            self._rows.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("delivery log: %d row(s) dropped so far (ClickHouse unavailable?)", self.dropped)
        if len(self._rows) >= self.batch_rows:
            self._wake.set()

    @property
    def buffered(self) -> int:
        return len(self._rows) + (len(self._batch[0]) if self._batch else 0)

    # -- lifecycle

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="delivery-log")

    async def close(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self.flush(), timeout=self.close_timeout_s)
        except (TimeoutError, Exception):
            log.warning("delivery log: last flush failed")
        if self.buffered:
            log.warning("delivery log: %d row(s) not written at shutdown", self.buffered)

    async def _run(self) -> None:
        pause = self.flush_s
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=pause)
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self.flush()
                pause = self.flush_s
            except Exception as exc:  # kept: the next round retries the same batch (same token)
                self.failures += 1
                pause = min(max(pause * 2, 1.0), self.max_pause_s)
                log.warning(
                    "delivery log: insert failed (%s); %d row(s) kept, retry in %.0f s",
                    exc,
                    self.buffered,
                    pause,
                )

    async def flush(self) -> None:
        """Insert everything buffered, a batch at a time; raises on the first failed insert (its batch
        and the rows after it stay buffered)."""
        loop = asyncio.get_running_loop()
        while self._batch is not None or self._rows:
            if self._batch is None:
                take = [self._rows.popleft() for _ in range(min(self.batch_rows, len(self._rows)))]
                self._batch = (take, f"delivery-log/{uuid.uuid4().hex}")
            rows, token = self._batch
            await loop.run_in_executor(self._executor, self._insert, rows, token)
            self._batch = None
            self.inserted += len(rows)
