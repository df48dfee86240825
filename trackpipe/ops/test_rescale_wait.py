"""The rescale's waits ride a broker restart out: Kafka unavailable is "not yet", until the step's timeout."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from trackpipe.ops.rescale import RescaleError, _wait


def test_a_wait_goes_on_while_kafka_is_unavailable() -> None:
    calls: list[int] = []

    async def check() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaConnectionError("Unable to bootstrap")
        return True

    said: list[str] = []
    asyncio.run(_wait("the edges", check, 30, said.append))
    assert len(calls) == 3
    assert said == [
        "  waiting for the edges ... (Kafka unavailable: KafkaConnectionError: Unable to bootstrap)"
    ]


def test_a_wait_times_out_naming_the_unavailable_kafka() -> None:
    def check() -> bool:
        raise KafkaConnectionError("Unable to bootstrap")

    with pytest.raises(RescaleError, match=r"timed out after 0s waiting for the drain \(Kafka unavailable"):
        asyncio.run(_wait("the drain", check, 0.0, lambda _line: None))
