"""The real Kafka broker from ``tests.fixtures_kafka``: aiokafka and faust-streaming against it.

These pin down that the client versions the pipeline uses (aiokafka 0.14, faust-streaming
0.15) speak the protocol versions the chosen broker still supports (Kafka 4 dropped many
old ones, KIP-896): admin CreateTopics, idempotent produce, consumer groups, and a Faust
worker with its leader topic, a table changelog and both processing guarantees.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration

CONSUMER_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        described = await admin.describe_topics([name])
    finally:
        await admin.close()
    assert len(described) == 1 and described[0]["error_code"] == 0, described
    assert sorted(p["partition"] for p in described[0]["partitions"]) == list(range(partitions))


async def consume_exactly(consumer: AIOKafkaConsumer, count: int, within: float = 30.0) -> list:
    records: list = []
    deadline = time.monotonic() + within
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} records: {records}"
        batch = await consumer.getmany(timeout_ms=500)
        for msgs in batch.values():
            records.extend(msgs)
    # nothing beyond what was produced
    extra = await consumer.getmany(timeout_ms=300)
    assert not any(extra.values()), extra
    return records


async def test_idempotent_produce_to_partitions_and_group_consume(kafka_bootstrap, unique_name):
    topic, group = unique_name("orders"), unique_name("grp")
    await create_topic(kafka_bootstrap, topic, 3)

    expected = {p: [f"p{p}-m{i}".encode() for i in range(5)] for p in range(3)}
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for p, values in expected.items():
            for i, value in enumerate(values):
                md = await producer.send_and_wait(topic, value, key=f"k{i}".encode(), partition=p)
                assert (md.topic, md.partition, md.offset) == (topic, p, i)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **CONSUMER_TIMEOUTS,
    )
    await consumer.start()
    try:
        records = await consume_exactly(consumer, 15)
        assert consumer.assignment() == {TopicPartition(topic, p) for p in range(3)}
        await consumer.commit()
        committed = {p: await consumer.committed(TopicPartition(topic, p)) for p in range(3)}
    finally:
        await consumer.stop()

    got: dict[int, list[bytes]] = defaultdict(list)
    for rec in records:
        assert rec.key == f"k{rec.offset}".encode()
        got[rec.partition].append(rec.value)
    assert dict(got) == expected
    assert committed == {0: 5, 1: 5, 2: 5}


async def test_topic_auto_creation(kafka_bootstrap, unique_name):
    topic = unique_name("auto")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        md = await producer.send_and_wait(topic, b"first")
    finally:
        await producer.stop()
    assert (md.partition, md.offset) == (0, 0)

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=unique_name("grp"), auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        assert [r.value for r in await consume_exactly(consumer, 1)] == [b"first"]
    finally:
        await consumer.stop()


class ClickCounter:
    """A Faust worker run in the test's own event loop: one agent, one table."""

    def __init__(self, bootstrap: str, app_id: str, source: str, datadir: Path, guarantee: str) -> None:
        self.app = faust.App(
            app_id,
            broker=f"kafka://{bootstrap}",
            store="memory://",
            web_enabled=False,
            autodiscover=False,
            datadir=str(datadir),  # default is ./<id>-data in the cwd
            processing_guarantee=guarantee,
            topic_partitions=2,
            topic_replication_factor=1,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=10,
            broker_heartbeat_interval=1,
            broker_commit_interval=0.5,
        )
        self.topic = self.app.topic(source, key_serializer="raw", value_serializer="raw")
        self.counts = self.app.Table("counts", default=int, partitions=2)
        self.received: list[tuple[bytes, bytes]] = []
        self.want = 0
        self.all_in = asyncio.Event()
        self.app.agent(self.topic, name="collect")(self.collect)

    async def collect(self, stream) -> None:
        async for event in stream.events():
            self.received.append((event.key, event.value))
            self.counts[event.key.decode()] += 1
            if len(self.received) >= self.want:
                self.all_in.set()

    async def run_until(self, records: list[tuple[bytes, bytes]], bootstrap: str, topic: str) -> None:
        """Start the worker, produce ``records``, wait until they all came in, linger 1 s."""
        self.want = len(records)
        await asyncio.wait_for(self.app.start(), 60)  # returns once partitions are assigned
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()
        await asyncio.wait_for(self.all_in.wait(), 30)
        await asyncio.sleep(1)  # a duplicate, if any, would show up now

    async def stop(self) -> None:
        await asyncio.wait_for(self.app.stop(), 30)


def clicks(start: int, stop: int) -> list[tuple[bytes, bytes]]:
    return [(f"user-{i % 4}".encode(), f"click-{i}".encode()) for i in range(start, stop)]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_faust_worker_consumes_updates_table_and_resumes(
    kafka_bootstrap, unique_name, tmp_path: Path, guarantee
):
    app_id, source = unique_name("app"), unique_name("clicks")
    # Faust does not create the source topics of its agents (only its own internal ones:
    # the assignor leader topic and table changelogs).  If the topic is missing when the
    # worker subscribes, it is left out of the assignment and only picked up at the next
    # metadata refresh (minutes), so create it first.
    await create_topic(kafka_bootstrap, source, 2)

    first = ClickCounter(kafka_bootstrap, app_id, source, tmp_path / "w1", guarantee)
    batch1 = clicks(0, 20)
    try:
        await first.run_until(batch1, kafka_bootstrap, source)
        assert sorted(first.received) == sorted(batch1)
        for key in {k for k, _ in batch1}:  # per-key order follows the partition
            assert [v for k, v in first.received if k == key] == [v for k, v in batch1 if k == key]
        assert dict(first.counts.items()) == {f"user-{u}": 5 for u in range(4)}
        changelog = first.counts.changelog_topic.get_topic_name()
        assert changelog == f"{app_id}-counts-changelog"
    finally:
        await first.stop()

    # A new worker of the same app: the table is recovered from the changelog and the
    # agent resumes from the committed offsets, so it sees only the new records.
    second = ClickCounter(kafka_bootstrap, app_id, source, tmp_path / "w2", guarantee)
    batch2 = clicks(20, 24)
    try:
        await second.run_until(batch2, kafka_bootstrap, source)
        assert sorted(second.received) == sorted(batch2)
        assert dict(second.counts.items()) == {f"user-{u}": 6 for u in range(4)}
    finally:
        await second.stop()

    # Faust created its internal topics on the broker; the changelog holds the table.
    consumer = AIOKafkaConsumer(
        changelog,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        assert f"{app_id}-__assignor-__leader" in await consumer.topics()
        latest: dict[bytes, bytes] = {}
        deadline = time.monotonic() + 15
        while len(latest) < 4 or set(latest.values()) != {b"6"}:
            assert time.monotonic() < deadline, latest
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                latest.update((r.key, r.value) for r in msgs)
    finally:
        await consumer.stop()
    assert latest == {f'"user-{u}"'.encode(): b"6" for u in range(4)}
