"""Distributed config store: a compacted Kafka topic shared by every edge instance.

At start the edge reads the topic from the beginning to its end offsets (the configuration as of now),
then tails it in the background, so a goal created through one edge reaches the others within the
consumer's fetch wait. Writes go through an idempotent ``acks=all`` producer, and :meth:`write` returns
only when this edge's own reader has applied them: a read after a write on the same edge sees it.
Records are keyed (``goal/<id>``, ``link/<id>``, ``alert/<id>``); compaction keeps the latest record of
each key.

A write that fails (e.g. during a broker restart) spends the idempotent producer's sequence number, and
the broker would refuse every later write of that producer (``OutOfOrderSequenceNumber``): so a failed
write replaces the producer before it is answered (retriable; the client writes again). A write that
reached the topic and is then repeated is harmless: the record is the same goal or link, keyed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.config import ConfigRecord, ConfigState, ConfigStoreError, check_readable

log = logging.getLogger(__name__)


class KafkaConfigStore:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        security: dict[str, object] | None = None,
        client_id: str = "trackpipe-edge-config",
        write_timeout_s: float = 15.0,
        start_timeout_s: float = 60.0,
    ):
        self.topic = topic
        self._bootstrap = bootstrap
        self._security = security or {}
        self._client_id = client_id
        self._write_timeout = write_timeout_s
        self._start_timeout = start_timeout_s
        self._state = ConfigState()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._applied: dict[TopicPartition, int] = {}
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()  # one producer replacement at a time
        self.last_error: str | None = None

    @property
    def state(self) -> ConfigState:
        return self._state

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,
            request_timeout_ms=int(self._write_timeout * 1000),
            **self._security,
        )

    async def _replace_producer(self) -> None:
        """A fresh producer for the next write (the old one may be unusable: see the module docstring)."""
        async with self._writing:
            old, self._producer = self._producer, None
            if old is not None:
                try:
                    await asyncio.wait_for(old.stop(), self._write_timeout)
                except Exception as exc:  # it is replaced either way
                    log.warning("stopping the old configuration producer failed: %r", exc)
            producer = self._new_producer()
            try:
                await asyncio.wait_for(producer.start(), self._write_timeout)
            except Exception:
                await producer.stop()
                raise
            self._producer = producer

    async def start(self) -> None:
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:  # e.g. refused credentials: close it, or it is reported unclosed at exit
            await producer.stop()
            raise
        try:
            cluster = await producer.client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(self.topic)
            if not parts:
                raise ConfigStoreError(
                    f"topic {self.topic!r} does not exist; run 'trackpipe topics create'", retriable=False
                )
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=200,
                **self._security,
            )
            await consumer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer, self._consumer = producer, consumer
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            self._applied = {tp: 0 for tp in tps}
            deadline = time.monotonic() + self._start_timeout
            while any(self._applied[tp] < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise ConfigStoreError(
                        f"could not read the configuration topic {self.topic!r} to its end "
                        f"within {self._start_timeout:.0f}s"
                    )
                await self._poll_once(1000)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "configuration loaded from %s: %d goals, links and alert rules (%d records)",
            self.topic,
            len(self._state),
            self._state.records_applied,
        )
        self._task = asyncio.create_task(self._tail(), name="config-tail")

    async def _poll_once(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=10_000)
        for tp, messages in batches.items():
            for msg in messages:
                key = msg.key.decode("utf-8", "replace") if msg.key is not None else ""
                self._state.apply_logged(key, msg.value, f"{tp.topic}[{tp.partition}]@{msg.offset}")
        async with self._progress:
            for tp in self._applied:
                self._applied[tp] = max(self._applied[tp], await self._consumer.position(tp))
            self._progress.notify_all()

    async def _tail(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._poll_once(1000)
                self.last_error = None
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep tailing: a stopped reader would freeze this edge's config
                self.last_error = repr(exc)
                log.error("reading %s failed, retrying in %.1fs: %r", self.topic, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def write(self, records: Sequence[ConfigRecord]) -> None:
        if self._consumer is None:
            raise ConfigStoreError("configuration store is not started")
        check_readable(records)
        try:
            if self._producer is None:  # a replacement after a failed write did not start yet
                await self._replace_producer()
            assert self._producer is not None
            futures = [
                await self._producer.send(self.topic, key=rec.key.encode(), value=rec.value)
                for rec in records
            ]
            metas = await asyncio.wait_for(asyncio.gather(*futures), self._write_timeout)
        except (KafkaError, TimeoutError) as exc:
            try:
                await self._replace_producer()
            except Exception as again:  # the broker is still away: the next write tries again
                log.warning("configuration producer not replaced yet: %r", again)
            raise ConfigStoreError(f"configuration not stored, retry: {exc!r}") from exc
        wanted: dict[TopicPartition, int] = {}
        for meta in metas:
            tp = TopicPartition(meta.topic, meta.partition)
            wanted[tp] = max(wanted.get(tp, 0), meta.offset + 1)

        def caught_up() -> bool:
            return all(self._applied.get(tp, 0) >= off for tp, off in wanted.items())

        try:
            async with self._progress:
                await asyncio.wait_for(self._progress.wait_for(caught_up), self._write_timeout)
        except TimeoutError:
            raise ConfigStoreError(
                "configuration stored but not yet visible on this edge; it will appear shortly"
            ) from None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
