"""Target partition of a visitor id, computed exactly as Kafka's default partitioner does for a key."""

from __future__ import annotations

import struct
from functools import lru_cache

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), the same values as
    ``aiokafka.partitioner.murmur2``, reading the input four bytes at a time (~3x faster)."""
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra:
        rest = data[length - extra :]
        if extra >= 3:
            h ^= rest[2] << 16
        if extra >= 2:
            h ^= rest[1] << 8
        h = ((h ^ rest[0]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


@lru_cache(maxsize=65536)
def partition_for(visitor_id: str, partitions: int) -> int:
    return (murmur2(visitor_id.encode()) & 0x7FFFFFFF) % partitions
