"""The distributed stream for the edge's SSE endpoint: the public Kafka topic, keyed by project.

A project's messages are all in one partition (``partition_for(project)``, the producer's partitioner),
so a cursor is ``<partition>-<offset>``: resuming reads that partition from the next offset and keeps the
project's records. Consumers are assigned partitions by hand (no group): one per open SSE connection,
kept between its reads while idle (at most ``MAX_IDLE_READERS``), so a connection does not reconnect
to Kafka each time it waits. A cursor before the partition's first retained offset has expired (410).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.partitioning import partition_for
from schemas.stream.source import CursorError, StreamItem, StreamUnavailable

MAX_IDLE_READERS = 64


def parse_cursor(text: str) -> tuple[int, int]:
    part, sep, offset = text.partition("-")
    if not sep or not part.isdigit() or not offset.lstrip("-").isdigit() or len(text) > 40:
        raise CursorError(f"Last-Event-ID {text[:40]!r} is not a cursor of this stream")
    return int(part), int(offset)


class KafkaStreamSource:
    def __init__(
        self, bootstrap: str, topic: str, partitions: int, *, security: dict[str, object] | None = None
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.security = security or {}
        # idle readers by the cursor their next read continues from
        self._idle: OrderedDict[tuple[str, str], AIOKafkaConsumer] = OrderedDict()

    async def _reader(self, project: str, cursor: str, tp: TopicPartition, offset: int) -> AIOKafkaConsumer:
        found = self._idle.pop((project, cursor), None)
        if found is not None:
            return found
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            client_id="trackpipe-edge-stream",
            **self.security,
        )
        try:
            await consumer.start()
            consumer.assign([tp])
            first = (await consumer.beginning_offsets([tp]))[tp]
            if offset < first:
                raise CursorError(f"Last-Event-ID {cursor} is older than the retained stream", expired=True)
            consumer.seek(tp, offset)
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _park(self, project: str, cursor: str, consumer: AIOKafkaConsumer) -> None:
        self._idle[(project, cursor)] = consumer
        while len(self._idle) > MAX_IDLE_READERS:
            _, oldest = self._idle.popitem(last=False)
            await oldest.stop()

    async def latest(self, project: str) -> str | None:
        part = partition_for(project, self.partitions)
        tp = TopicPartition(self.topic, part)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.security
        )
        try:
            await consumer.start()
            end = (await consumer.end_offsets([tp]))[tp]
        except KafkaError as exc:
            raise StreamUnavailable(f"the stream topic cannot be read: {exc}") from None
        finally:
            await consumer.stop()
        return f"{part}-{end - 1}"

    async def read(self, project: str, after: str | None, limit: int, wait_s: float) -> list[StreamItem]:
        part = partition_for(project, self.partitions)
        tp = TopicPartition(self.topic, part)
        if after is None:
            cursor, offset = f"{part}--1", 0
        else:
            cursor = after
            got_part, last = parse_cursor(after)
            if got_part != part:
                raise CursorError(f"Last-Event-ID {after} is not a cursor of project {project}'s stream")
            offset = last + 1
        key = project.encode()
        try:
            consumer = await self._reader(project, cursor, tp, offset)
        except KafkaError as exc:
            raise StreamUnavailable(f"the stream topic cannot be read: {exc}") from None
        items: list[StreamItem] = []
        deadline = time.monotonic() + wait_s
        try:
            while True:
                left = max(0.0, deadline - time.monotonic())
                found = await consumer.getmany(tp, timeout_ms=int(left * 1000), max_records=limit)
                for r in found.get(tp, []):
                    if r.key == key and r.value is not None:
                        ce_type = dict(r.headers or ()).get("ce_type", b"").decode()
                        items.append(StreamItem(f"{part}-{r.offset}", ce_type, r.value))
                if items or time.monotonic() >= deadline:
                    break
        except KafkaError as exc:
            await consumer.stop()
            raise StreamUnavailable(f"the stream topic cannot be read: {exc}") from None
        except BaseException:
            await consumer.stop()
            raise
        # the next read continues after the last item, or (nothing of this project yet) from the same cursor
        await self._park(project, items[-1].cursor if items else cursor, consumer)
        return items

    async def close(self) -> None:
        while self._idle:
            _, consumer = self._idle.popitem()
            with contextlib.suppress(KafkaError, asyncio.CancelledError):
                await consumer.stop()
