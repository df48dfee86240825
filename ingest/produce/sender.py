"""The I/O half of the edge's producer: drains the accumulator after a short linger and publishes.

A request calls :meth:`EdgeSender.submit` and is answered only when its events are durable. When more
events wait than ``max_buffered_events`` the edge sheds load (503, retriable) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from functools import partial

from ingest.errors import Rejected
from ingest.produce.accumulator import ReadyRecord, RecordAccumulator, Ticket
from ingest.produce.publisher import Publisher, PublishError
from schemas.events import Event

log = logging.getLogger(__name__)

#: Linger windows handed to a pipelining publisher (``enqueue_many``) and not yet acknowledged.
MAX_IN_FLIGHT = 8


def _resolve(fut: asyncio.Future[None], err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


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
        delivery_timeout_s: float | None = None,
    ):
        self._acc = accumulator
        self._publisher = publisher
        self._linger = linger_ms / 1000.0
        self._max_buffered = max_buffered_events
        self._deadline = delivery_timeout_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._in_flight_events = 0  # handed to the publisher, not yet acknowledged
        self.records_sent = 0
        self.events_sent = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="edge-sender")

    def publisher_health(self) -> str | None:
        """Why records cannot be made durable right now (None: they can): the publisher's ``health()``."""
        check = getattr(self._publisher, "health", None)
        return check() if check is not None else None

    async def submit(self, events: Sequence[Event]) -> None:
        """Hand events to the accumulator; returns once they are durable."""
        self._admit(len(events))
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._acc.append(events, Ticket(partial(_resolve, fut)))
        self._wake.set()
        await self._durable(loop, fut)

    async def submit_serialized(self, key: str, blobs: Sequence[bytes]) -> None:
        """Like :meth:`submit` for events already serialized (canonical Event JSON), all of the partition of
        ``key`` (their visitor id)."""
        self._admit(len(blobs))
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._acc.append_serialized(key, blobs, Ticket(partial(_resolve, fut)))
        self._wake.set()
        await self._durable(loop, fut)

    async def _durable(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
        """Wait for the request's records, at most ``delivery_timeout_s``: a broker that vanished without
        a word (a crash: the producer keeps retrying) must not hold clients for ever. On time-out the
        client gets a retriable 503; the records may still be stored later (the retry then adds its
        events again: raw rows are per event id, conversions are keyed, docs/architecture.md).

        One timer per request that fails the request's own future (its later outcome is then ignored by
        ``_resolve``), not ``wait_for(shield(fut))``: that costs two more futures, a task-wake-up chain and
        their callbacks per request, a tenth of the edge's CPU for 1-event requests. A cancelled request
        cancels its future; its records are published all the same."""
        if self._deadline is None:
            await fut
            return
        timer = loop.call_later(self._deadline, _time_out, fut, self._deadline)
        try:
            await fut
        finally:
            timer.cancel()

    def _admit(self, count: int) -> None:
        if self._closing:
            raise Overloaded("edge is shutting down; retry against another instance")
        if self._acc.buffered_events + self._in_flight_events + count > self._max_buffered:
            raise Overloaded(f"more than {self._max_buffered} events are waiting to be written; retry later")

    async def _run(self) -> None:
        enqueue = getattr(self._publisher, "enqueue_many", None)
        while True:
            if not self._acc:
                if self._closing:
                    break
                await self._wake.wait()
                self._wake.clear()
                continue
            if not self._acc.has_full() and not self._closing:
                await asyncio.sleep(self._linger)
            records = self._acc.drain()
            payloads = [(r.partition, r.payload) for r in records]
            if enqueue is None:
                try:
                    results = await self._publisher.publish_many(payloads)
                except Exception as exc:  # a publisher bug must fail the requests, not kill the sender
                    results = _failed(records, exc)
                self._complete(records, results)
                continue
            # Pipelined: enqueue in order, wait for the acknowledgements in a task of their own, and go on
            # grouping the next window meanwhile (at most MAX_IN_FLIGHT windows unacknowledged).
            while len(self._in_flight) >= MAX_IN_FLIGHT:
                await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            count = sum(r.event_count for r in records)
            self._in_flight_events += count
            try:
                outcome = await enqueue(payloads)
            except Exception as exc:
                self._in_flight_events -= count
                self._complete(records, _failed(records, exc))
                continue
            task = asyncio.create_task(self._acknowledged(records, count, outcome))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        if self._in_flight:
            await asyncio.wait(self._in_flight)

    async def _acknowledged(
        self, records: list[ReadyRecord], count: int, outcome: Awaitable[list[BaseException | None]]
    ) -> None:
        try:
            results = await outcome
        except Exception as exc:
            results = _failed(records, exc)
        finally:
            self._in_flight_events -= count
        self._complete(records, results)

    def _complete(self, records: list[ReadyRecord], results: Sequence[BaseException | None]) -> None:
        for rec, err in zip(records, results, strict=True):
            if err is None:
                self.records_sent += 1
                self.events_sent += rec.event_count
            else:
                log.warning("record for partition %d not accepted: %s", rec.partition, err)
            rec.complete(err)

    async def stop(self) -> None:
        """Flush what is buffered, wait for what is in flight, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task


def _time_out(fut: asyncio.Future[None], seconds: float) -> None:
    if not fut.done():
        fut.set_exception(PublishError(f"events not acknowledged within {seconds:g}s", retriable=True))


def _failed(records: list[ReadyRecord], exc: Exception) -> list[BaseException | None]:
    """A publisher bug must fail the requests, not kill the sender."""
    log.exception("publisher failed", exc_info=exc)
    return [PublishError(f"publish failed: {exc}", retriable=True)] * len(records)
