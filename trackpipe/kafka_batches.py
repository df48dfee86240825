"""Many small records produced as record batches, one future per batch instead of one per record.

aiokafka's ``send`` costs a metadata check, a partition lookup, an accumulator insert and a future per
record; the outbound planner produces one state record per conversion it announces and one stream message
per conversion (decision 169). ``create_batch``/``send_batch`` are aiokafka's public API for a caller that
knows its partitions: a batch is appended to the same accumulator (idempotent producers keep their
sequence numbers and ordering per partition), and its future resolves when the whole batch is
acknowledged with the producer's ``acks``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

Headers = list[tuple[str, bytes]]  # a list: aiokafka's C batch builder takes no other sequence


async def send_many(
    producer: AIOKafkaProducer,
    topic: str,
    records: Iterable[tuple[int, bytes | None, bytes | None, Headers]],
) -> list[asyncio.Future[Any]]:
    """Send ``(partition, key, value, headers)`` records, in order within each partition; the futures
    of their batches (every record is acknowledged once all of them are)."""
    by_partition: dict[int, list[tuple[bytes | None, bytes | None, Headers]]] = {}
    for partition, key, value, headers in records:
        by_partition.setdefault(partition, []).append((key, value, headers))
    futures: list[asyncio.Future[Any]] = []
    for partition, items in by_partition.items():
        batch = producer.create_batch()
        for key, value, headers in items:
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:  # full
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(timestamp=None, key=key, value=value, headers=headers)  # a first record fits
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures
