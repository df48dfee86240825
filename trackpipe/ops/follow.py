"""Following the layout topic: the edges switch the generation they produce to, the workers restart into
the generation they must process (docs/rescaling.md).

An edge announces itself on the layout topic (``edge/<id>``: the generation it produces to, every
``BEAT_S``) — first with generation -1, *before* it reads the layout: so a rescale that reads the topic
after writing its switch either sees the edge (and waits for it) or the edge read the switch already.
A clean stop removes the edge's record (a tombstone); a dead edge's record ages out (``EDGE_ALIVE_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from trackpipe.ops.kafka_view import LayoutRecord, decode_layout
from trackpipe.ops.layout import EDGE_KEY_PREFIX, EdgeBeat, Layout
from trackpipe.outbound.kafka_read import read_partition

log = logging.getLogger(__name__)

BEAT_S = 3.0
EDGE_ALIVE_S = 15.0  # an edge silent for longer is gone (5 beats)
STARTING = -1  # the generation an edge announces before it knows the layout


def edge_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LayoutFollower:
    """Reads the layout topic to its end, then follows it; ``on_change(layout)`` on every new layout."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        security: dict[str, object] | None = None,
        on_change: Callable[[Layout], Awaitable[None]] | None = None,
    ):
        self.bootstrap, self.topic = bootstrap, topic
        self.security = security or {}
        self.on_change = on_change
        self.record = LayoutRecord(None, {})
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def layout(self) -> Layout | None:
        return self.record.layout

    def _apply(self, records: list[tuple[bytes, bytes | None]]) -> bool:
        before = self.record.layout
        self.record = decode_layout(records, self.record)
        return self.record.layout != before

    async def start(self) -> Layout | None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.security
        )
        await self._consumer.start()
        tp = TopicPartition(self.topic, 0)
        records: list[tuple[bytes, bytes | None]] = []
        await read_partition(self._consumer, tp, lambda k, v: records.append((k, v)))
        self._apply(records)  # then followed from where the read stopped
        self._task = asyncio.create_task(self._follow(tp), name="layout-follower")
        return self.layout

    async def _follow(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        pending = False  # a change not yet acted on (or whose action failed: retried every second)
        while True:
            try:
                got = (await self._consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
                pending = self._apply([(r.key or b"", r.value) for r in got]) or pending
                if pending and self.on_change is not None and self.layout is not None:
                    await self.on_change(self.layout)
                pending = False
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("layout: following %s failed (%s); retrying", self.topic, exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("layout: acting on a new layout failed; retrying")
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


class EdgeBeats:
    """An edge's record on the layout topic: the generation it produces to, repeated every ``BEAT_S``."""

    def __init__(self, bootstrap: str, topic: str, *, security: dict[str, object] | None = None):
        self.bootstrap, self.topic = bootstrap, topic
        self.security = security or {}
        self.id = edge_id()
        self.generation = STARTING
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Announce the edge (generation -1) and wait for the acknowledgement: before the layout is read."""
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", **self.security)
        await self._producer.start()
        await self.beat()
        self._task = asyncio.create_task(self._run(), name="edge-beats")

    async def beat(self, generation: int | None = None) -> None:
        if generation is not None:
            self.generation = generation
        assert self._producer is not None
        value = EdgeBeat(generation=self.generation, at=time.time(), host=socket.gethostname())
        await self._producer.send_and_wait(
            self.topic, value.model_dump_json().encode(), (EDGE_KEY_PREFIX + self.id).encode(), partition=0
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(BEAT_S)
            try:
                await self.beat()
            except (KafkaError, OSError) as exc:
                log.warning("layout: edge beat not written (%s)", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            with contextlib.suppress(KafkaError, OSError):  # gone: the record ages out instead
                await self._producer.send_and_wait(
                    self.topic, None, (EDGE_KEY_PREFIX + self.id).encode(), partition=0
                )
            await self._producer.stop()
