"""Reading one compacted partition from its start to the end offset seen when reading began.

``consumer.position()`` right after ``seek_to_beginning`` may still answer the position of a fetch
made before the seek (observed with aiokafka 0.14: a consumer created with the default
``auto_offset_reset="latest"`` reported the end at once and the partition looked empty), so the end
is judged by the offsets of the records actually read after an explicit ``seek`` to the first offset.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

READ_TIMEOUT_S = 120.0


async def read_partition(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    apply: Callable[[bytes, bytes | None], object],
    timeout_s: float = READ_TIMEOUT_S,
    start: int = 0,
) -> int:
    """Assign ``tp`` alone to ``consumer``, read it from ``start`` (or its first offset, if later) up to the
    end offset it has now, calling ``apply(key, value)`` in order. Returns that end offset: the ``start``
    of the next call that reads on from there."""
    consumer.assign([tp])
    end = (await consumer.end_offsets([tp]))[tp]
    if start >= end:
        return end
    first = max(start, (await consumer.beginning_offsets([tp]))[tp])
    consumer.seek(tp, first)
    next_offset = first
    deadline = time.monotonic() + timeout_s
    while next_offset < end:
        if time.monotonic() > deadline:
            raise KafkaTimeoutError(f"{tp} not read to offset {end} within {timeout_s}s (at {next_offset})")
        got = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
        for r in got:
            apply(r.key or b"", r.value)
            next_offset = r.offset + 1
        if not got and await consumer.position(tp) >= end:
            break  # the last offsets were compacted away (an explicit seek makes the position exact)
    return end
