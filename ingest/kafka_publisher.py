"""Envelope records to Kafka with an idempotent, acks=all aiokafka producer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ingest.publisher import PublishError


class KafkaPublisher:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        partitions: int,
        client_id: str = "trackpipe-edge",
        compression: str | None = "zstd",
        max_record_bytes: int = 1_000_000,
        security: dict[str, object] | None = None,
    ):
        self.topic = topic
        self.partitions = partitions
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=compression,
            linger_ms=0,  # the edge's accumulator already lingers
            max_request_size=max_record_bytes + 64_000,
            request_timeout_ms=30_000,
            **(security or {}),
        )

    async def start(self) -> None:
        await self._producer.start()
        # A full metadata fetch never auto-creates topics (a per-topic request might).
        cluster = await self._producer.client.fetch_all_metadata()
        found = cluster.partitions_for_topic(self.topic)
        if not found:
            await self._producer.stop()
            raise PublishError(
                f"topic {self.topic!r} does not exist; run 'trackpipe topics create'", retriable=False
            )
        # The broker is the truth: group events by the partitions that exist.
        self.partitions = len(found)

    async def publish_many(self, records: list[tuple[int, bytes]]) -> list[BaseException | None]:
        return await (await self.enqueue_many(records))

    async def enqueue_many(self, records: list[tuple[int, bytes]]) -> Awaitable[list[BaseException | None]]:
        """Hand records to the producer, in order, and return what to await for their outcomes (one per
        record: None once acknowledged, else a PublishError). Records enqueued by one call go out before
        those of the next, so the sender can enqueue the next linger window while these are in flight."""
        futures: list[asyncio.Future[object]] = []
        for partition, payload in records:
            try:
                futures.append(await self._producer.send(self.topic, value=payload, partition=partition))
            except KafkaError as exc:
                fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
                fut.set_exception(exc)
                futures.append(fut)
        return self._outcomes(futures)

    @staticmethod
    async def _outcomes(futures: list[asyncio.Future[object]]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for outcome in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(outcome, BaseException):
                retriable = bool(getattr(outcome, "retriable", True))
                results.append(
                    PublishError(f"kafka did not acknowledge the record: {outcome!r}", retriable=retriable)
                )
            else:
                results.append(None)
        return results

    async def stop(self) -> None:
        await self._producer.stop()
