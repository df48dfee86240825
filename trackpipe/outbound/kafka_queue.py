"""The distributed mode's delivery store: the deliveries topic's partitions this worker owns, in memory.

Every worker runs one sender consumer (group ``<app>-outbound-send``) on ``<events>.deliveries``. When a
partition is assigned, the store reads it from the beginning and rebuilds its deliveries
(:class:`sinks.outbound.queue.PartitionQueue`); only once it has read up to the end offset it saw at the
assignment are that partition's deliveries handed to the loop, so a delivery already sent is never taken
for a pending one. It then keeps reading (new plans, manual retries, its own state records). After each
attempt :meth:`write` produces the delivery's whole new state (``acks=all``) before it is applied here: a
crash before that ack sends it again after the rebuild (at least once, same id and body). A partition
moved to another worker by a rebalance is dropped here; an attempt in flight for it may be repeated by
the new owner. Finished deliveries older than ``keep_finished_s`` are removed with tombstones.

No offsets are committed: the topic is the state, read from its start by every owner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from schemas.partitioning import partition_for
from sinks.outbound.queue import (
    PartitionQueue,
    QueuedDelivery,
    QueueRecordError,
    RecordKind,
    encode_delivery,
    encode_retry,
    record_key,
)
from sinks.outbound.schedule import Delivery
from trackpipe.kafka_group import KafkaGroupService
from trackpipe.outbound.loop import DueRow

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 60.0


def due_row(d: QueuedDelivery) -> DueRow:
    return DueRow(
        d.id,
        d.project,
        d.goal_id,
        d.url,
        d.body,
        d.next_at,
        d.status,
        d.step,
        d.attempts,
        d.event,
        d.method,
        d.link_id,
        d.created_at,
    )


class _Listener(ConsumerRebalanceListener):
    def __init__(self, store: KafkaDueStore):
        self.store = store

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        for tp in revoked:
            self.store.drop(tp.partition)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self.store.assigned(list(assigned))


class KafkaDueStore(KafkaGroupService):
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        group_id: str,
        *,
        security: dict[str, object] | None = None,
        keep_finished_s: float = 7 * 86400,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(bootstrap, group_id, security)
        self.topic = topic
        self.partitions = partitions
        self.keep_finished_s = keep_finished_s
        self.on_change = on_change or (lambda: None)
        self.clock = clock
        self.queues: dict[int, PartitionQueue] = {}
        self.loading: dict[int, int] = {}  # partition -> end offset to reach before it is ready
        self.skipped = 0  # undecodable records
        self._last_prune = 0.0

    # -- partitions

    def drop(self, partition: int) -> None:
        self.queues.pop(partition, None)
        self.loading.pop(partition, None)

    async def assigned(self, tps: list[TopicPartition]) -> None:
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(tps) if tps else {}
        firsts = await self._consumer.beginning_offsets(tps) if tps else {}
        for tp in tps:
            self.queues[tp.partition] = PartitionQueue()
            self.loading[tp.partition] = ends[tp]
            # an explicit seek, not seek_to_beginning: position() is exact at once (outbound/kafka_read.py)
            self._consumer.seek(tp, firsts[tp])
        log.info("outbound: deliveries partitions %s assigned", sorted(tp.partition for tp in tps))

    def ready(self) -> list[PartitionQueue]:
        return [q for p, q in self.queues.items() if p not in self.loading]

    # -- lifecycle

    async def open(self) -> None:
        await self._start_group(
            self.topic, _Listener(self), self._consume, name="outbound-deliveries-consumer"
        )

    async def _consume(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                changed = False
                for tp, records in batches.items():
                    queue = self.queues.get(tp.partition)
                    if queue is None:
                        continue
                    for r in records:
                        try:
                            queue.apply(r.key or b"", r.value)
                            changed = True
                        except QueueRecordError as exc:
                            self.skipped += 1
                            log.warning("outbound: deliveries record %s@%d skipped: %s", tp, r.offset, exc)
                for partition, end in list(self.loading.items()):
                    tp = TopicPartition(self.topic, partition)
                    if partition in self.queues and await consumer.position(tp) >= end:
                        del self.loading[partition]
                        changed = True
                        log.info("outbound: deliveries partition %d loaded", partition)
                if changed:
                    self.on_change()
                await self._maybe_prune()
            except asyncio.CancelledError:
                raise
            except (KafkaError, QueueRecordError, OSError) as exc:
                log.warning("outbound: reading the deliveries topic failed (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def _maybe_prune(self) -> None:
        now = self.clock()
        if now - self._last_prune < PRUNE_EVERY_S:
            return
        self._last_prune = now
        assert self._producer is not None
        cutoff = now - self.keep_finished_s
        for partition in [p for p in self.queues if p not in self.loading]:
            for d in list(self.queues[partition].finished_before(cutoff)):
                for kind in RecordKind:
                    await self._producer.send(self.topic, None, record_key(kind, d.id), partition=partition)
                self.queues[partition].apply(record_key(RecordKind.STATE, d.id), None)

    # -- the DueStore protocol

    async def due(self, now: float, limit: int) -> list[DueRow]:
        found: list[QueuedDelivery] = []
        for queue in self.ready():
            found.extend(queue.due(now, limit))
        found.sort(key=lambda d: d.next_at or 0.0)
        return [due_row(d) for d in found[:limit]]

    async def write(
        self, row: DueRow, new: Delivery, at: float, status: int | None, error: str | None, dead: str | None
    ) -> None:
        partition = partition_for(row.id, self.partitions)
        queue = self.queues.get(partition)
        current = None if queue is None else queue.deliveries.get(row.id)
        if queue is None or current is None:  # moved to another worker meanwhile: its owner sends it
            log.info("outbound: delivery %s is no longer ours; its new owner delivers it", row.id)
            return
        stored = replace(
            current,
            status=new.status.value,
            next_at=None if new.due_at is None else new.due_at.timestamp(),
            step=new.step,
            attempts=new.attempts,
            last_attempt_at=at,
            last_status=status,
            last_error=error,
            dead_reason=dead,
            rev=current.rev + 1,
        )
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.topic, encode_delivery(stored), record_key(RecordKind.STATE, row.id), partition=partition
        )
        queue.apply(record_key(RecordKind.STATE, row.id), encode_delivery(stored))

    async def stats(self, now: float) -> tuple[int, float]:
        """(active deliveries, age of the oldest one due) over the partitions this worker holds."""
        depth, oldest = 0, 0.0
        for queue in self.ready():
            d, o = queue.stats(now)
            depth, oldest = depth + d, max(oldest, o)
        return depth, oldest


class KafkaDeliveryControl:
    """Manual retries for the admin API in distributed mode: one ``retry`` record per id, read by the
    partition's owner (which makes a failed or dead delivery due again)."""

    def __init__(
        self, bootstrap: str, topic: str, partitions: int, *, security: dict[str, object] | None = None
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.security = security or {}
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    acks="all",
                    client_id="trackpipe-deliveries",
                    **self.security,
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def retry(self, ids: Sequence[str]) -> int:
        producer = await self._started()
        value = encode_retry(time.time())
        futures = [
            await producer.send(
                self.topic,
                value,
                record_key(RecordKind.RETRY, i),
                partition=partition_for(i, self.partitions),
            )
            for i in ids
        ]
        for fut in futures:
            await fut
        return len(futures)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
