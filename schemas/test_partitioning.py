import random

from aiokafka.partitioner import murmur2 as kafka_murmur2

from schemas.partitioning import murmur2


def test_murmur2_equals_the_kafka_clients():
    rng = random.Random(3)
    keys = [
        b"",
        b"a",
        b"ab",
        b"abc",
        b"abcd",
        b"1588166554499-0.2020703998482254",
        "caf\u00e9".encode(),
    ]
    keys += [rng.randbytes(rng.randrange(0, 300)) for _ in range(3000)]
    for key in keys:
        assert murmur2(key) == kafka_murmur2(key), key
