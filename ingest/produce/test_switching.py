"""Switching the edge's sender to another publisher (a rescale): requests accepted before the switch are
durable in the old publisher when ``switch`` returns, later ones go to the new one, with its partition
count; the old publisher is stopped."""

from __future__ import annotations

import asyncio

from ingest.produce.accumulator import RecordAccumulator
from ingest.produce.sender import EdgeSender
from ingest.produce.switching import SwitchingSender
from schemas.partitioning import partition_for


class SlowPublisher:
    """In memory; every publish is acknowledged after ``delay_s``."""

    def __init__(self, partitions: int, delay_s: float = 0.02):
        self.partitions = partitions
        self.delay_s = delay_s
        self.records: list[tuple[int, bytes]] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def publish_many(self, records: list[tuple[int, bytes]]) -> list[BaseException | None]:
        assert self.started and not self.stopped
        await asyncio.sleep(self.delay_s)
        self.records.extend(records)
        return [None] * len(records)


def _make(pub) -> EdgeSender:
    return EdgeSender(RecordAccumulator(pub.partitions, partition_for), pub, linger_ms=1)


def _values(pub: SlowPublisher) -> list[int]:
    return [int(v) for _, payload in pub.records for v in payload.split(b"[", 1)[1].rstrip(b"]}").split(b",")]


async def test_requests_before_the_switch_are_durable_in_the_old_publisher_and_later_ones_go_to_the_new():
    old, new = SlowPublisher(4), SlowPublisher(8)
    sender = SwitchingSender(_make, old)
    await old.start()
    await sender.start()
    before = [asyncio.create_task(sender.submit_serialized(f"v{i}", [str(i).encode()])) for i in range(50)]
    await asyncio.sleep(0)  # handed to the old sender, not yet acknowledged
    await sender.switch(new)
    assert all(t.done() and t.exception() is None for t in before)  # answered before switch returned
    assert old.stopped and sorted(_values(old)) == list(range(50))
    assert sender.partitions == 8
    await asyncio.gather(*(sender.submit_serialized(f"v{i}", [str(i).encode()]) for i in range(50, 80)))
    assert sorted(_values(new)) == list(range(50, 80)) and len(_values(old)) == 50
    assert {p for p, _ in new.records} <= set(range(8))
    assert all(p == partition_for(f"v{int(payload.split(b'[')[1][:2])}", 8) for p, payload in new.records)
    await sender.stop()
    assert new.stopped


async def test_requests_arriving_during_the_switch_go_to_exactly_one_publisher():
    old, new = SlowPublisher(2, 0.05), SlowPublisher(3)
    sender = SwitchingSender(_make, old)
    await old.start()
    await sender.start()

    async def stream() -> None:
        for i in range(200):
            await sender.submit_serialized(f"v{i % 7}", [str(i).encode()])

    runner = asyncio.create_task(stream())
    await asyncio.sleep(0.1)
    await sender.switch(new)
    await runner
    got = _values(old) + _values(new)
    assert sorted(got) == list(range(200))  # each once
    assert _values(old) and _values(new)
    assert max(_values(old)) < min(_values(new))  # one client's order is kept across the switch
    await sender.stop()
