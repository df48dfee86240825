"""The Faust worker's changelog writer (processors.runtime.faust.store.KafkaChangelog) on the real broker:
a batch's records go out as record batches per partition, split where a batch is full, and the offsets it
reports (what a RocksDB database stores as the changelog position it holds) are the records' own."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processors.runtime.faust.store import KafkaChangelog, send_all
from schemas.partitioning import partition_for
from tests.scenario import create_topics

PARTITIONS = 3


class Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class Table:
    """What KafkaChangelog reads of a Faust table: its changelog topic."""

    def __init__(self, topic: str) -> None:
        self.changelog_topic = Topic(topic)


async def read_all(bootstrap: str, topic: str, want: int) -> dict[int, list[tuple[int, bytes, bytes | None]]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: dict[int, list[tuple[int, bytes, bytes | None]]] = defaultdict(list)
        n = 0
        while n < want:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for r in records:
                    got[tp.partition].append((r.offset, r.key, r.value))
                    n += 1
        return got
    finally:
        await consumer.stop()


async def test_changelog_records_go_out_in_partition_batches_with_their_offsets(kafka_bootstrap, unique_name):
    topic = unique_name("changelog")
    await create_topics(kafka_bootstrap, [topic], PARTITIONS)
    # small batches: a commit's records of one partition need several
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=2048, linger_ms=5)
    await producer.start()
    try:
        changelog = KafkaChangelog(Table(topic), producer=lambda: producer)  # type: ignore[arg-type]
        keys = [f"visitor-{i}" for i in range(120)]

        def pending(round_: int) -> list[Any]:
            out: list[Any] = [
                (partition_for(k, PARTITIONS), k.encode(), f"{k}@{round_}".encode() * 8) for k in keys
            ]
            if round_:
                out[0] = (out[0][0], out[0][1], None)  # a deletion: a tombstone
            return out

        first = await send_all(changelog, pending(0))
        second = await send_all(changelog, pending(1))
        # 20 records of ~300 bytes for one partition: several record batches, offsets back to back
        batches = await changelog.send(0, [(b"k%d" % i, b"x" * 300) for i in range(20)])
        starts = [(await fut).offset for fut, _ in batches]
        got = await read_all(kafka_bootstrap, topic, 2 * len(keys))
    finally:
        await producer.stop()

    for round_, offsets in ((0, first), (1, second)):
        sent = pending(round_)
        for p in range(PARTITIONS):
            mine = [(k, v) for part, k, v in sent if part == p]
            on_log = got[p][round_ * len(mine) : (round_ + 1) * len(mine)]
            assert [(k, v) for _, k, v in on_log] == mine  # each partition's records, in order
            assert offsets[p] == on_log[-1][0]  # the partition's last offset, as acknowledged
    assert len(batches) >= 3 and sum(n for _, n in batches) == 20
    assert all(starts[i + 1] == starts[i] + batches[i][1] for i in range(len(batches) - 1))
    assert starts[0] == second[0] + 1
    assert set(first) == set(range(PARTITIONS))
