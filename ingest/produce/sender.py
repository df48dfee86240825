"""The I/O half of the edge's producer: drains the accumulator after a short linger and publishes.

A request calls :meth:`EdgeSender.submit` and is answered only when its events are durable. When more
events wait than ``max_buffered_events`` the edge sheds load (503, retriable) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Sequence

from ingest.errors import Rejected
from ingest.produce.accumulator import ReadyRecord, RecordAccumulator, Ticket
from ingest.produce.publisher import Publisher, PublishError
from schemas.events import Event

log = logging.getLogger(__name__)

#: Linger windows handed to a pipelining publisher (``enqueue_many``) and not yet acknowledged.
MAX_IN_FLIGHT = 8


class _FutureTicket(Ticket):
    """A request's ticket that resolves the future its handler waits on (a later outcome of a future
    already failed by the delivery timeout, or cancelled, is ignored)."""

    __slots__ = ("_fut",)

    def __init__(self, fut: asyncio.Future[None]):
        self.pending = 0
        self.error = None
        self.finished = False
        self._fut = fut

    def _finish(self, error: BaseException | None) -> None:
        fut = self._fut
        if fut.done():
            return
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)


class _Deadlines:
    """Fails the futures of requests not durable within ``seconds`` (retriable :class:`PublishError`).

    Requests are grouped in slices of ``seconds / 20`` (at most 0.5 s) by arrival, with one timer for all:
    a request times out between ``seconds`` and ``seconds`` + one slice after it arrived. Not one timer
    per request: a uvloop timer set and cancelled per request (its handle is closed on the next loop
    turn) cost ~15% of the edge's CPU for 1-event requests (decision 170). The sweep runs once per slice
    while requests wait and drops the futures already done, so what is kept is what is still waiting."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float):
        self._loop = loop
        self.seconds = seconds
        self._grain = min(0.5, seconds / 20)
        self._slices: deque[tuple[float, list[asyncio.Future[None]]]] = deque()  # (expiry, futures)
        self._current: list[asyncio.Future[None]] = []
        self._current_until = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def add(self, fut: asyncio.Future[None]) -> None:
        now = self._loop.time()
        if now >= self._current_until:
            self._current = []
            self._current_until = now + self._grain
            self._slices.append((self._current_until + self.seconds, self._current))
            if self._timer is None:
                self._timer = self._loop.call_at(self._current_until, self._sweep)
        self._current.append(fut)

    def _sweep(self) -> None:
        self._timer = None
        now = self._loop.time()
        kept: deque[tuple[float, list[asyncio.Future[None]]]] = deque()
        for expiry, futures in self._slices:
            if expiry <= now:
                for fut in futures:
                    _time_out(fut, self.seconds)
                futures.clear()
                continue
            futures[:] = [f for f in futures if not f.done()]
            if futures or (futures is self._current and now < self._current_until):
                kept.append((expiry, futures))
        self._slices = kept
        if kept:
            self._timer = self._loop.call_at(now + self._grain, self._sweep)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
        self._deadlines: _Deadlines | None = None
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._in_flight_events = 0  # handed to the publisher, not yet acknowledged
        self.records_sent = 0
        self.events_sent = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._deadline is not None:
            self._deadlines = _Deadlines(self._loop, self._deadline)
        self._task = asyncio.create_task(self._run(), name="edge-sender")

    def publisher_health(self) -> str | None:
        """Why records cannot be made durable right now (None: they can): the publisher's ``health()``."""
        check = getattr(self._publisher, "health", None)
        return check() if check is not None else None

    async def submit(self, events: Sequence[Event]) -> None:
        """Hand events to the accumulator; returns once they are durable."""
        self._admit(len(events))
        fut = self._loop.create_future()
        self._acc.append(events, _FutureTicket(fut))
        self._wake.set()
        if self._deadlines is not None:
            self._deadlines.add(fut)
        await fut

    async def submit_serialized(self, key: str, blobs: Sequence[bytes]) -> None:
        """Like :meth:`submit` for events already serialized (canonical Event JSON), all of the partition of
        ``key`` (their visitor id).

        Waits for the request's records at most ``delivery_timeout_s``: a broker that vanished without a
        word (a crash: the producer keeps retrying) must not hold clients for ever. On time-out the client
        gets a retriable 503; the records may still be stored later (the retry then adds its events again:
        raw rows are per event id, conversions are keyed, docs/architecture.md). A cancelled request
        cancels its future; its records are published all the same."""
        self._admit(len(blobs))
        fut = self._loop.create_future()
        self._acc.append_serialized(key, blobs, _FutureTicket(fut))
        self._wake.set()
        if self._deadlines is not None:
            self._deadlines.add(fut)
        await fut

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
        if self._deadlines is not None:
            self._deadlines.close()


def _time_out(fut: asyncio.Future[None], seconds: float) -> None:
    if not fut.done():
        fut.set_exception(PublishError(f"events not acknowledged within {seconds:g}s", retriable=True))


def _failed(records: list[ReadyRecord], exc: Exception) -> list[BaseException | None]:
    """A publisher bug must fail the requests, not kill the sender."""
    log.exception("publisher failed", exc_info=exc)
    return [PublishError(f"publish failed: {exc}", retriable=True)] * len(records)
