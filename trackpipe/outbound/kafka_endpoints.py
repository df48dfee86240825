"""The endpoint circuit in distributed mode: one compacted topic ``<events>.endpoints`` (one partition,
key = endpoint key such as ``goal:<id>``, value = its state, a tombstone when clean) shared by every
worker and read by the edges.

A worker's :class:`KafkaEndpointStore` is the delivery loop's :class:`~trackpipe.outbound.endpoints.
EndpointStore`: it reads the topic at start, saves each change (``acks=all``), and follows the topic,
so an endpoint disabled by one worker is disabled in all, and one re-enabled through any edge
(:class:`KafkaEndpointControl`, a clean state written to the topic) delivers again everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from processors.runtime.faust.topology import TopologyNames
from schemas.outbound.deliveries import EndpointsList
from sinks.outbound.schedule import DisableReason, Endpoint
from trackpipe.outbound.kafka_queue import KafkaDeliveryControl
from trackpipe.outbound.kafka_read import read_partition

log = logging.getLogger(__name__)


def encode_endpoint(e: Endpoint) -> bytes | None:
    if e == Endpoint():
        return None
    return orjson.dumps(
        {
            "failures": [t.timestamp() for t in e.failures],
            "disabled_at": None if e.disabled_at is None else e.disabled_at.timestamp(),
            "disabled_reason": None if e.disabled_reason is None else e.disabled_reason.value,
        }
    )


def decode_endpoint(value: bytes | None) -> Endpoint:
    if value is None:
        return Endpoint()
    try:
        raw = orjson.loads(value)
        return Endpoint(
            tuple(datetime.fromtimestamp(t, UTC) for t in raw["failures"]),
            None if raw["disabled_at"] is None else datetime.fromtimestamp(raw["disabled_at"], UTC),
            None if raw["disabled_reason"] is None else DisableReason(raw["disabled_reason"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.warning("outbound: unreadable endpoint state skipped: %s", exc)
        return Endpoint()


async def read_all(bootstrap: str, topic: str, security: dict[str, object]) -> dict[str, Endpoint]:
    """The topic's endpoints now (from the start to the end offset)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **security
    )
    await consumer.start()
    try:
        found: dict[str, Endpoint] = {}
        await read_partition(consumer, TopicPartition(topic, 0), lambda k, v: _apply(found, k.decode(), v))
        return found
    finally:
        await consumer.stop()


def _apply(found: dict[str, Endpoint], key: str, value: bytes | None) -> Endpoint:
    state = decode_endpoint(value)
    if state == Endpoint():
        found.pop(key, None)
    else:
        found[key] = state
    return state


class KafkaEndpointStore:
    def __init__(self, bootstrap: str, topic: str, *, security: dict[str, object] | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security or {}
        self.on_change: Callable[[str, Endpoint], None] = lambda key, e: None
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._state: dict[str, Endpoint] = {}

    async def load_endpoints(self) -> dict[str, Endpoint]:
        """Read the topic to its end, then follow it (changes go to ``on_change``)."""
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", **self.security)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.security
        )
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        self._consumer.assign([tp])
        end = (await self._consumer.end_offsets([tp]))[tp]
        await self._consumer.seek_to_beginning(tp)
        while await self._consumer.position(tp) < end:
            for records in (await self._consumer.getmany(tp, timeout_ms=500)).values():
                for r in records:
                    _apply(self._state, (r.key or b"").decode(), r.value)
        self._task = asyncio.create_task(self._follow(tp), name="outbound-endpoints")
        return dict(self._state)

    async def _follow(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        while True:
            try:
                for records in (await self._consumer.getmany(tp, timeout_ms=1000)).values():
                    for r in records:
                        key = (r.key or b"").decode()
                        before = self._state.get(key, Endpoint())
                        after = _apply(self._state, key, r.value)
                        if after != before:
                            self.on_change(key, after)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("outbound: following the endpoints topic failed (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def save_endpoint(self, key: str, endpoint: Endpoint) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(self.topic, encode_endpoint(endpoint), key.encode(), partition=0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()


class KafkaEndpointControl:
    """The edge's view of the endpoint circuit in distributed mode (``/api/v1/endpoints``)."""

    def __init__(self, bootstrap: str, topic: str, *, security: dict[str, object] | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security or {}

    async def endpoints(self) -> EndpointsList:
        from trackpipe.outbound.sqlite_control import endpoint_state

        found = await read_all(self.bootstrap, self.topic, self.security)
        return EndpointsList(endpoints=[endpoint_state(k, e) for k, e in sorted(found.items())])

    async def reenable(self, key: str) -> bool:
        found = await read_all(self.bootstrap, self.topic, self.security)
        if key not in found:
            return False
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", **self.security)
        await producer.start()
        try:
            await producer.send_and_wait(self.topic, None, key.encode(), partition=0)
        finally:
            await producer.stop()
        return True


class KafkaAdminControl(KafkaEndpointControl):
    """What a distributed edge's admin API acts on: manual retries (``r/`` records on the deliveries
    topic) and the endpoint circuit (the endpoints topic)."""

    def __init__(
        self,
        bootstrap: str,
        names: TopologyNames,
        partitions: int,
        *,
        security: dict[str, object] | None = None,
    ):
        super().__init__(bootstrap, names.endpoints, security=security)
        self.deliveries = KafkaDeliveryControl(bootstrap, names.deliveries, partitions, security=security)

    async def retry(self, ids: Sequence[str]) -> int:
        return await self.deliveries.retry(ids)

    async def close(self) -> None:
        await self.deliveries.close()
