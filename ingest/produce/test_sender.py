"""The sender with a pipelining in-memory publisher: answers only after acknowledgement, keeps the order of
records per partition across linger windows, fails exactly the requests whose records failed, and flushes
what is in flight on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from ingest.produce.accumulator import RecordAccumulator
from ingest.produce.publisher import PublishError
from ingest.produce.sender import EdgeSender, Overloaded, _Deadlines
from schemas.partitioning import partition_for


class PipelinedMemoryPublisher:
    """Keeps records in memory; each ``enqueue_many`` call is acknowledged when the test says so."""

    partitions = 2

    def __init__(self) -> None:
        self.enqueued: list[tuple[int, bytes]] = []
        self.pending: list[asyncio.Future[list[BaseException | None]]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish_many(self, records: list[tuple[int, bytes]]) -> list[BaseException | None]:
        return await (await self.enqueue_many(records))

    async def enqueue_many(self, records: list[tuple[int, bytes]]) -> Awaitable[list[BaseException | None]]:
        self.enqueued.extend(records)
        fut: asyncio.Future[list[BaseException | None]] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        return fut


async def _until(cond, steps: int = 200) -> None:
    for _ in range(steps):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_requests_wait_for_acks_and_windows_overlap():
    pub = PipelinedMemoryPublisher()
    sender = EdgeSender(RecordAccumulator(2, partition_for), pub, linger_ms=1, max_buffered_events=1000)
    await sender.start()
    first = asyncio.create_task(sender.submit_serialized("v1", [b'{"n":1}', b'{"n":2}']))
    await _until(lambda: len(pub.pending) == 1)
    # the first window is not acknowledged yet; the next one is enqueued behind it
    second = asyncio.create_task(sender.submit_serialized("v1", [b'{"n":3}']))
    await _until(lambda: len(pub.pending) == 2)
    assert not first.done() and not second.done()
    assert [p for p, _ in pub.enqueued] == [partition_for("v1", 2)] * 2
    assert pub.enqueued[0][1].endswith(b'{"n":1},{"n":2}]}') and pub.enqueued[1][1].endswith(b'{"n":3}]}')
    # admission counts what is in flight
    with pytest.raises(Overloaded):
        await sender.submit_serialized("v2", [b"{}"] * 998)
    pub.pending[1].set_result([None])
    await asyncio.wait_for(second, 1)
    assert not first.done()
    pub.pending[0].set_result([PublishError("no", retriable=True)])
    with pytest.raises(PublishError):
        await asyncio.wait_for(first, 1)
    assert sender.events_sent == 1 and sender.records_sent == 1
    await sender.stop()


async def test_stop_waits_for_records_in_flight():
    pub = PipelinedMemoryPublisher()
    sender = EdgeSender(RecordAccumulator(2, partition_for), pub, linger_ms=1)
    await sender.start()
    req = asyncio.create_task(sender.submit_serialized("v", [b"{}"]))
    await _until(lambda: len(pub.pending) == 1)
    stopping = asyncio.create_task(sender.stop())
    await asyncio.sleep(0.02)
    assert not stopping.done() and not req.done()
    pub.pending[0].set_result([None])
    await asyncio.wait_for(stopping, 1)
    await asyncio.wait_for(req, 1)
    with pytest.raises(Overloaded):
        await sender.submit_serialized("v", [b"{}"])


async def test_a_request_whose_records_are_never_acknowledged_gets_a_retriable_error_in_time():
    """A broker that crashed (the producer retries for ever) must not hold the client: after the delivery
    timeout the request fails retriably; a later acknowledgement of its record changes nothing."""
    pub = PipelinedMemoryPublisher()
    acc = RecordAccumulator(pub.partitions, partition_for)
    sender = EdgeSender(acc, pub, linger_ms=0, delivery_timeout_s=0.2)
    await sender.start()
    with pytest.raises(PublishError) as exc:
        await sender.submit_serialized("v1", [b'{"e":1}'])
    assert exc.value.retriable and "within 0.2s" in str(exc.value)
    assert len(pub.enqueued) == 1  # handed to the publisher, never acknowledged
    pub.pending[0].set_result([None])  # acknowledged at last: nobody waits, nothing breaks
    await sender.stop()
    assert sender.records_sent == 1


async def test_the_delivery_deadline_keeps_only_waiting_requests_and_sleeps_when_idle():
    """One timer for all waiting requests: futures already done are dropped at the next sweep, the one still
    waiting fails retriably after the timeout, and with nothing waiting no timer is left running."""
    loop = asyncio.get_running_loop()
    deadlines = _Deadlines(loop, 0.2)
    answered = [loop.create_future() for _ in range(100)]
    waiting = loop.create_future()
    for fut in answered:
        deadlines.add(fut)
    deadlines.add(waiting)
    for fut in answered:
        fut.set_result(None)
    await _until(lambda: [f for _, futures in deadlines._slices for f in futures] == [waiting])
    with pytest.raises(PublishError) as exc:
        await asyncio.wait_for(waiting, 1)
    assert exc.value.retriable and "within 0.2s" in str(exc.value)
    await _until(lambda: deadlines._timer is None and not deadlines._slices)
