"""KafkaPublisher's producer replacement without a broker: a stand-in producer whose records the test
acknowledges or fails. The proof against a real broker restart is tests/integration/test_broker_restart.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
)

from ingest.produce.kafka_publisher import KafkaPublisher
from ingest.produce.publisher import PublishError

TOPIC = "events"


class Cluster:
    """What the fake broker says in metadata: partition -> leader node (-1: none)."""

    def __init__(self, partitions: int = 2) -> None:
        self.leaders = dict.fromkeys(range(partitions), 1)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.leaders) if topic == TOPIC else None

    def leader_for_partition(self, tp: TopicPartition) -> int | None:
        return self.leaders.get(tp.partition)


class Broker:
    def __init__(self) -> None:
        self.reachable = True
        self.cluster = Cluster()


class Client:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    @property
    def cluster(self) -> Cluster:
        return self.broker.cluster

    async def fetch_all_metadata(self) -> Cluster:
        if not self.broker.reachable:
            raise KafkaConnectionError("no broker")
        return self.broker.cluster

    def force_metadata_update(self) -> asyncio.Future[bool]:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(self.broker.reachable)
        return fut


class Producer:
    """Records wait in ``pending`` until the test acks or fails them; ``stop`` waits for them to settle
    (as aiokafka's flush does) unless ``stuck`` (then it never returns)."""

    def __init__(self, broker: Broker, log: list[str]) -> None:
        self.client = Client(broker)
        self.log = log
        self.pending: list[tuple[asyncio.Future[object], int, bytes]] = []
        self.sent: list[bytes] = []
        self.stuck = False
        self.closed = False

    async def start(self) -> None:
        self.log.append("start")
        if not self.client.broker.reachable:
            raise KafkaConnectionError("Unable to bootstrap")

    async def send(self, topic: str, value: bytes, partition: int) -> asyncio.Future[object]:
        assert topic == TOPIC
        if self.closed:
            raise ProducerClosed()
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.pending.append((fut, partition, value))
        self.sent.append(value)
        return fut

    def settle(self, value: bytes, error: BaseException | None = None) -> None:
        for fut, _, v in self.pending:
            if v == value:
                if error is None:
                    fut.set_result(object())  # RecordMetadata
                else:
                    fut.set_exception(error)
                return
        raise AssertionError(f"{value!r} not pending")

    async def stop(self) -> None:
        self.log.append("stop")
        self.closed = True
        if self.stuck:
            await asyncio.Event().wait()
        if self.pending:
            await asyncio.wait([f for f, _, _ in self.pending])
        self.log.append("stopped")


class Setup:
    def __init__(self, **kw: Any) -> None:
        self.broker = Broker()
        self.log: list[str] = []
        self.producers: list[Producer] = []
        self.publisher = KafkaPublisher(
            "unused:9092", TOPIC, partitions=2, probe_interval_s=0.01, producer_factory=self._make, **kw
        )

    def _make(self) -> Producer:
        self.producers.append(Producer(self.broker, self.log))
        return self.producers[-1]


async def _until(what: str, cond: Callable[[], object], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.002)


@pytest.fixture
async def setup() -> Any:
    s = Setup()
    await s.publisher.start()
    yield s
    await s.publisher.stop()


async def test_a_failed_delivery_replaces_the_producer_once(setup: Setup) -> None:
    pub = setup.publisher
    old = setup.producers[0]
    first = asyncio.ensure_future(await pub.enqueue_many([(0, b"a0"), (1, b"a1")]))
    second = asyncio.ensure_future(await pub.enqueue_many([(0, b"b0")]))

    old.settle(b"a1")
    old.settle(b"a0", OutOfOrderSequenceNumber())
    results = await first
    assert results[1] is None  # acknowledged: durable
    err = results[0]
    assert isinstance(err, PublishError) and err.retriable and "OutOfOrderSequenceNumber" in str(err)
    health = pub.health()
    assert health is not None and "replaced" in health and "OutOfOrderSequenceNumber" in health

    # While the old producer settles, new records are refused at once (retriable) and sent nowhere.
    refused = await (await pub.enqueue_many([(1, b"c1")]))
    assert isinstance(refused[0], PublishError) and refused[0].retriable
    assert len(setup.producers) == 1, "a new producer must not start before the old one stopped"

    # The old producer's last record fails too: no second replacement.
    old.settle(b"b0", OutOfOrderSequenceNumber())
    assert isinstance((await second)[0], PublishError)
    await _until("the replacement", lambda: pub.health() is None)
    assert pub.replacements == 1 and len(setup.producers) == 2
    assert setup.log == ["start", "stop", "stopped", "start"]

    new = setup.producers[1]
    third = asyncio.ensure_future(await pub.enqueue_many([(0, b"d0")]))
    new.settle(b"d0")
    assert await third == [None]
    # Nothing is ever re-sent by the publisher: each record went to exactly one producer, once.
    assert old.sent == [b"a0", b"a1", b"b0"] and new.sent == [b"d0"]


async def test_the_replacement_waits_for_the_broker_and_health_recovers_without_traffic(setup: Setup) -> None:
    pub = setup.publisher
    setup.broker.reachable = False
    await _until("the probe notices", lambda: pub.health() is not None)
    assert "unreachable" in str(pub.health())

    pending = asyncio.ensure_future(await pub.enqueue_many([(1, b"x")]))
    setup.producers[0].settle(b"x", LeaderNotAvailableError())  # expired: its partition had no leader
    assert (await pending)[0].retriable  # type: ignore[union-attr]
    await _until("a failed start", lambda: "cannot start yet" in str(pub.health()))
    assert "KafkaConnectionError" in str(pub.health())
    refused = await (await pub.enqueue_many([(0, b"y")]))
    assert isinstance(refused[0], PublishError) and refused[0].retriable

    setup.broker.reachable = True  # the broker is back; no request arrives
    await _until("healthy again", lambda: pub.health() is None)
    assert pub.replacements == 1
    assert [p.sent for p in setup.producers[1:]] == [[]] * (len(setup.producers) - 1)


async def test_the_replacement_waits_for_partition_leaders(setup: Setup) -> None:
    pub = setup.publisher
    setup.broker.cluster.leaders[1] = -1
    await _until("the probe notices", lambda: "no leader for partitions [1]" in str(pub.health()))
    pending = asyncio.ensure_future(await pub.enqueue_many([(1, b"x")]))
    setup.producers[0].settle(b"x", LeaderNotAvailableError())
    await pending
    await _until(
        "a refused start", lambda: "no leader" in str(pub.health()) and "replaced" in str(pub.health())
    )
    setup.broker.cluster.leaders[1] = 1
    await _until("healthy again", lambda: pub.health() is None)
    assert pub.replacements == 1


async def test_an_oversized_record_fails_alone() -> None:
    s = Setup()
    await s.publisher.start()

    async def too_big(topic: str, value: bytes, partition: int) -> asyncio.Future[object]:
        raise MessageSizeTooLargeError()

    s.producers[0].send = too_big  # type: ignore[method-assign]
    try:
        result = await (await s.publisher.enqueue_many([(0, b"huge")]))
        assert isinstance(result[0], PublishError) and not result[0].retriable
        assert s.publisher.health() is None and s.publisher.replacements == 0
    finally:
        await s.publisher.stop()


async def test_a_producer_that_cannot_settle_is_given_up_on() -> None:
    s = Setup(settle_timeout_s=0.05)
    await s.publisher.start()
    try:
        old = s.producers[0]
        old.stuck = True
        waiting = asyncio.ensure_future(await s.publisher.enqueue_many([(0, b"w")]))
        failing = asyncio.ensure_future(await s.publisher.enqueue_many([(1, b"f")]))
        old.settle(b"f", OutOfOrderSequenceNumber())
        await failing
        # "w" was never acknowledged and its producer will not say: it fails (retriable), not hangs.
        err = (await asyncio.wait_for(waiting, 2))[0]
        assert isinstance(err, PublishError) and err.retriable
        await _until("the replacement", lambda: s.publisher.health() is None)
        assert s.publisher.replacements == 1
    finally:
        await asyncio.wait_for(s.publisher.stop(), 2)
