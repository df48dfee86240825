"""``trackpipe.kafka_batches.send_many`` against the real broker: every record, in order per partition,
with its key, value and headers, across batch boundaries and with a record larger than a batch."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.integration.test_kafka_broker import consume_exactly, create_topic
from trackpipe.kafka_batches import send_many

pytestmark = pytest.mark.integration


async def test_send_many_delivers_every_record_in_partition_order(kafka_bootstrap, unique_name) -> None:
    topic = unique_name("batches")
    await create_topic(kafka_bootstrap, topic, 3)
    records = [
        (i % 3, f"k{i}".encode(), f"value-{i}".encode() * (1 + i % 7), [("n", str(i).encode())])
        for i in range(3000)  # ~60 kB a partition: several 16 kB batches each
    ]
    records.insert(1500, (1, b"big", b"x" * 100_000, []))  # alone larger than a batch
    records.append((2, None, b"no key", []))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        futures = await send_many(producer, topic, records)
        assert len(futures) > 3  # more than one batch per partition
        for fut in futures:
            await fut
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        got = await consume_exactly(consumer, len(records))
    finally:
        await consumer.stop()
    by_partition: dict[int, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]] = {}
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        by_partition.setdefault(r.partition, []).append((r.key, r.value, list(r.headers)))
    expected: dict[int, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]] = {}
    for partition, key, value, headers in records:
        expected.setdefault(partition, []).append((key, value, headers))
    assert by_partition == expected
