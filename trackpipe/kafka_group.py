"""The Kafka clients of a worker-side group service, started and stopped in one place.

The outbound planner, the deliveries queue and the alert evaluator each own partitions of one topic
through a consumer group and keep per-partition state: they need an idempotent ``acks=all`` producer,
the group consumer subscribed with a rebalance listener, optionally a second consumer that reads state
partitions (:func:`trackpipe.outbound.kafka_read.read_partition`), and one task that runs the loop.
:class:`KafkaGroupService` (their base) starts them in that order (producer, reader, consumer, then the
task) and stops them in the reverse one: the task first, so nothing produces or commits while the clients
go away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener


class KafkaGroupService:
    def __init__(self, bootstrap: str, group_id: str, security: dict[str, object] | None = None):
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.security = security or {}
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def _common(self, role: str) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap, "client_id": f"{self.group_id}-{role}", **self.security}

    async def _start_group(
        self,
        topic: str,
        listener: ConsumerRebalanceListener,
        run: Callable[[], Coroutine[Any, Any, None]],
        *,
        name: str,
        reader: bool = False,
        **consumer_options: Any,
    ) -> None:
        """Start the clients, subscribe the group consumer to ``topic`` and run ``run()`` as task ``name``.
        ``consumer_options`` go to the group consumer (e.g. ``max_poll_records``)."""
        self._producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **self._common("producer"))
        if reader:
            self._reader = AIOKafkaConsumer(
                enable_auto_commit=False, auto_offset_reset="earliest", **self._common("state")
            )
        self._consumer = AIOKafkaConsumer(
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **consumer_options,
            **self._common("consumer"),
        )
        await self._producer.start()
        if self._reader is not None:
            await self._reader.start()
        await self._consumer.start()
        self._consumer.subscribe([topic], listener=listener)
        self._task = asyncio.create_task(run(), name=name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in (self._consumer, self._reader, self._producer):
            if client is not None:
                await client.stop()
