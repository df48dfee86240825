"""Target partition of a visitor id, computed exactly as Kafka's default partitioner does for a key."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=65536)
def partition_for(visitor_id: str, partitions: int) -> int:
    return (murmur2(visitor_id.encode()) & 0x7FFFFFFF) % partitions
