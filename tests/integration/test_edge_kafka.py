"""The edge's Kafka path against the real broker: envelope records on the partition of each visitor."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ingest.app import build_edge_app
from ingest.config.edge import EdgeConfig
from ingest.produce.kafka_publisher import KafkaPublisher
from ingest.produce.publisher import PublishError
from schemas.envelope import decode_envelope
from schemas.partitioning import partition_for


async def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def test_concurrent_requests_become_few_envelope_records(kafka_bootstrap, unique_name):
    topic = unique_name("edge")
    await _create_topic(kafka_bootstrap, topic, 3)
    config = EdgeConfig(linger_ms=50)
    app = build_edge_app(config, lambda: KafkaPublisher(kafka_bootstrap, topic, partitions=3))
    visitors = [f"visitor-{i}" for i in range(30)]
    async with TestClient(TestServer(app)) as client:

        async def one(vid: str) -> list[str]:
            body = {"cid": "1", "pid": "9", "vid": vid, "ev": [{"evt": "hitGoal", "goals": [5]}] * 2}
            resp = await client.post("/track", data=orjson.dumps(body), headers={"User-Agent": "t"})
            assert resp.status == 200, await resp.text()
            return list((await resp.json())["event_ids"])

        accepted = [eid for ids in await asyncio.gather(*(one(v) for v in visitors)) for eid in ids]

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records = []
        while sum(ends.values()) > len(records):
            batch = await consumer.getmany(timeout_ms=2000)
            assert batch, "records missing from the topic"
            for msgs in batch.values():
                records.extend(msgs)
    finally:
        await consumer.stop()

    seen = []
    for rec in records:
        events = decode_envelope(rec.value)
        assert all(partition_for(e.visitor_id, 3) == rec.partition for e in events)
        seen.extend(e.event_id for e in events)
    assert sorted(seen) == sorted(accepted)  # every accepted event exactly once
    # concurrent requests were grouped: far fewer records than requests
    assert len(records) < len(visitors)


async def test_edge_refuses_to_start_without_topic(kafka_bootstrap, unique_name):
    publisher = KafkaPublisher(kafka_bootstrap, unique_name("missing"), partitions=3)
    with pytest.raises(PublishError, match="does not exist"):
        await publisher.start()
