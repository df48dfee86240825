"""The I/O half of the edge's producer: drains the accumulator after a short linger and publishes.

A request calls :meth:`EdgeSender.submit` and is answered only when its events are durable. When more
events wait than ``max_buffered_events`` the edge sheds load (503, retriable) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from ingest.accumulator import RecordAccumulator, Ticket
from ingest.errors import Rejected
from ingest.publisher import Publisher, PublishError
from schemas.events import Event

log = logging.getLogger(__name__)


class Overloaded(Rejected):
    retriable = True

    def __init__(self, message: str):
        super().__init__(503, "overloaded", message)


class EdgeSender:
    def __init__(
        self,
        accumulator: RecordAccumulator,
        publisher: Publisher,
        *,
        linger_ms: float = 5.0,
        max_buffered_events: int = 200_000,
    ):
        self._acc = accumulator
        self._publisher = publisher
        self._linger = linger_ms / 1000.0
        self._max_buffered = max_buffered_events
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.records_sent = 0
        self.events_sent = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="edge-sender")

    async def submit(self, events: Sequence[Event]) -> None:
        if self._closing:
            raise Overloaded("edge is shutting down; retry against another instance")
        if self._acc.buffered_events + len(events) > self._max_buffered:
            raise Overloaded(f"more than {self._max_buffered} events are waiting to be written; retry later")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done(err: BaseException | None) -> None:
            if fut.done():
                return
            if err is None:
                fut.set_result(None)
            else:
                fut.set_exception(err)

        self._acc.append(events, Ticket(done))
        self._wake.set()
        await fut

    async def _run(self) -> None:
        while True:
            if not self._acc:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            if not self._acc.has_full() and not self._closing:
                await asyncio.sleep(self._linger)
            records = self._acc.drain()
            try:
                results = await self._publisher.publish_many([(r.partition, r.payload) for r in records])
            except Exception as exc:  # a publisher bug must fail the requests, not kill the sender
                log.exception("publisher failed")
                results = [PublishError(f"publish failed: {exc}", retriable=True)] * len(records)
            for rec, err in zip(records, results, strict=True):
                if err is None:
                    self.records_sent += 1
                    self.events_sent += rec.event_count
                else:
                    log.warning("record for partition %d not accepted: %s", rec.partition, err)
                rec.complete(err)

    async def stop(self) -> None:
        """Flush what is buffered, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
