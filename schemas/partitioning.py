"""Target partition of a key (visitor id, click key, state key), computed exactly as Kafka's default
partitioner does: the edge groups events by it and the processors route messages and state by it."""

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


#: a batch's keys repeat within it (a visitor's events, its state keys); 2^18 entries held ~70 MB of
#: keys for good in a worker (decision 165)
@lru_cache(maxsize=1 << 14)
def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner for ``key``: murmur2, made positive, modulo ``partitions``."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
