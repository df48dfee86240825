"""Outbound planning in a worker: ``<events>.conversions`` -> due deliveries on ``<events>.deliveries``.

Every worker runs one planner consumer (group ``<app>-outbound-plan``) on the conversion rows the
conversion stage produces (partition = that of ``project + conversion key``). Its state, the digests of
what each conversion has announced (:mod:`sinks.outbound.events`, :mod:`sinks.outbound.templates`), is a
compacted topic ``<events>.outbound-state`` with the same partitions: a partition's digests are read
into memory when the partition is assigned, before any of its rows are planned.

For each batch of one partition, in this order, each step acknowledged (``acks=all``) before the next:

1. the due deliveries (``planned`` records, :mod:`sinks.outbound.queue`) are produced to the deliveries
   topic, and the public stream's messages (:mod:`sinks.stream.cloudevents`, every conversion, keyed
   and partitioned by project) to the stream topic;
2. the changed digests are produced to the state topic;
3. the input offsets are committed.

A crash before 3 replays the batch: if 2 was not acknowledged the same deliveries are planned again with
the same ids and bodies, and the queue ignores a plan for an id it already holds; if it was, the digests
say nothing changed and nothing is planned. A delivery is therefore never lost and never planned with a
different body. Planning reads the goals and links from the config topic, loaded before the first batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from processors.runtime.faust.topology import TopologyNames, conversion_items, decode_conversion_facts
from schemas.conversion_facts import ConversionFacts
from schemas.envelope import EnvelopeError
from schemas.partitioning import partition_for
from sinks.outbound.events import Digest, Key
from sinks.outbound.planner import (
    GoalOf,
    PostbackKey,
    RuleOf,
    keys_of,
    plan,
    plan_postbacks,
    postback_keys_of,
)
from sinks.outbound.queue import QueuedDelivery, RecordKind, encode_delivery, record_key
from sinks.outbound.templates import FiredDigest
from sinks.stream.cloudevents import plan_stream
from trackpipe.alerting.kafka import forward_records
from trackpipe.kafka_batches import send_many
from trackpipe.kafka_group import KafkaGroupService
from trackpipe.outbound.digest_store import DigestStore, MemoryDigests
from trackpipe.outbound.kafka_read import read_partition
from trackpipe.outbound.loop import POSTBACK_EVENT

log = logging.getLogger(__name__)

WEBHOOK_DIGEST = "d"
POSTBACK_DIGEST = "f"
STREAM_DIGEST = "s"


def state_key(kind: str, key: Key | PostbackKey) -> str:
    return "\x1f".join((kind, *key))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, planner: KafkaOutboundPlanner):
        self.planner = planner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        for tp in revoked:
            self.planner.held.discard(tp.partition)
            self.planner.digests.reset(tp.partition)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        for tp in assigned:
            await self.planner.load_state(tp.partition)


class KafkaOutboundPlanner(KafkaGroupService):
    def __init__(
        self,
        bootstrap: str,
        names: TopologyNames,
        partitions: int,
        group_id: str,
        goal_of: GoalOf,
        rule_of: RuleOf,
        *,
        stream_topic: str | None = None,
        alert_projects: Callable[[], set[str]] | None = None,
        security: dict[str, object] | None = None,
        batch_max: int = 1000,
        clock: Callable[[], datetime] | None = None,
        digests: DigestStore | None = None,
    ):
        super().__init__(bootstrap, group_id, security)
        self.names = names
        self.partitions = partitions
        self.goal_of = goal_of
        self.rule_of = rule_of
        self.stream_topic = stream_topic
        self.alert_projects = alert_projects or set
        self.batch_max = batch_max
        self.clock = clock or (lambda: datetime.now(UTC))
        # digest key -> digest JSON, per partition held (read from the state topic when assigned)
        self.digests: DigestStore = digests or MemoryDigests()
        self.held: set[int] = set()
        self.planned = 0
        self.skipped = 0

    async def start(self) -> None:
        await self._start_group(
            self.names.conversions_out,
            _Listener(self),
            self._run,
            name="outbound-planner",
            reader=True,
            max_poll_records=self.batch_max,
        )

    async def load_state(self, partition: int) -> None:
        """The digests of ``partition``: its state topic partition read from the start to its end."""
        assert self._reader is not None
        self.held.discard(partition)
        self.digests.reset(partition)

        def apply(key: bytes, value: bytes | None) -> None:
            self.digests.apply(partition, key.decode(), value)

        await read_partition(self._reader, TopicPartition(self.names.outbound_state, partition), apply)
        self.held.add(partition)

    async def close(self) -> None:
        await super().close()
        self.digests.close()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=self.batch_max)
                for tp, records in batches.items():
                    if tp.partition not in self.held or not records:
                        continue  # revoked meanwhile: its new owner plans these rows
                    await self._plan_partition(tp, records)
            except asyncio.CancelledError:
                raise
            except CommitFailedError as exc:  # a rebalance: the new owner replays the batch
                log.warning("outbound: planner commit failed (%s); the batch is replayed", exc)
            except (KafkaError, OSError) as exc:
                log.warning("outbound: planning failed (%s); retrying from the last commit", exc)
                await self._rewind()
                await asyncio.sleep(1.0)

    async def _rewind(self) -> None:
        """After a failed batch: read again from the committed offsets (nothing acknowledged is skipped)."""
        assert self._consumer is not None
        with contextlib.suppress(KafkaError, OSError):
            for tp in self._consumer.assignment():
                committed = await self._consumer.committed(tp)
                if committed is None:
                    await self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)

    async def _plan_partition(self, tp: TopicPartition, records: Sequence[object]) -> None:
        wanted = self.alert_projects()
        rows: list[ConversionFacts] = []
        by_project: dict[str, list[bytes]] = {}  # alert rules' input: these rows' JSON, re-keyed by project
        for r in records:
            try:
                found = decode_conversion_facts(r.value)  # type: ignore[attr-defined]
            except EnvelopeError as exc:
                self.skipped += 1
                log.warning("outbound: conversions record %s@%d skipped: %s", tp, r.offset, exc)  # type: ignore[attr-defined]
                continue
            rows.extend(found)
            if wanted and not wanted.isdisjoint(row.project_id for row in found):
                for row, item in zip(found, conversion_items(r.value), strict=True):  # type: ignore[attr-defined]
                    if row.project_id in wanted:
                        by_project.setdefault(row.project_id, []).append(item)
        keys, fired_keys = keys_of(rows), postback_keys_of(rows)
        state_keys = [state_key(WEBHOOK_DIGEST, k) for k in keys]
        state_keys += [state_key(POSTBACK_DIGEST, k) for k in fired_keys]
        if self.stream_topic:
            state_keys += [state_key(STREAM_DIGEST, k) for k in keys]
        state = self.digests.get_many(tp.partition, state_keys)
        digests = {
            k: Digest.from_json(state[t]) for k in keys if (t := state_key(WEBHOOK_DIGEST, k)) in state
        }
        fired = {
            k: FiredDigest.from_json(state[t])
            for k in fired_keys
            if (t := state_key(POSTBACK_DIGEST, k)) in state
        }
        streamed = {
            k: Digest.from_json(state[t]) for k in keys if (t := state_key(STREAM_DIGEST, k)) in state
        }
        now = self.clock()
        stream = plan_stream(rows, streamed, now) if self.stream_topic else None
        webhooks = plan(rows, digests, self.goal_of, now)
        postbacks = plan_postbacks(rows, fired, self.rule_of, now)
        due = [
            QueuedDelivery(
                d.delivery_id,
                d.project,
                d.goal_id,
                d.event.value,
                "POST",
                d.url,
                d.body,
                d.created_at.timestamp(),
                d.next_at.timestamp(),
            )
            for d in webhooks.due
        ] + [
            QueuedDelivery(
                d.delivery_id,
                d.project,
                d.goal_id,
                POSTBACK_EVENT,
                d.method.value,
                d.url,
                d.body,
                d.created_at.timestamp(),
                d.next_at.timestamp(),
                link_id=d.link_id,
            )
            for d in postbacks.due
        ]
        changed = {state_key(WEBHOOK_DIGEST, k): v.to_json() for k, v in webhooks.digests.items()}
        changed.update({state_key(POSTBACK_DIGEST, k): v.to_json() for k, v in postbacks.digests.items()})
        if stream is not None:
            changed.update({state_key(STREAM_DIGEST, k): v.to_json() for k, v in stream.digests.items()})
        assert self._producer is not None and self._consumer is not None
        sent = await send_many(
            self._producer,
            self.names.deliveries,
            (
                (
                    partition_for(d.id, self.partitions),
                    record_key(RecordKind.PLANNED, d.id),
                    encode_delivery(d),
                    [],
                )
                for d in due
            ),
        )
        if stream is not None and self.stream_topic is not None:
            sent += await send_many(
                self._producer,
                self.stream_topic,
                (
                    (
                        partition_for(m.project, self.partitions),
                        m.project.encode(),
                        m.body,
                        [("ce_type", m.type.value.encode()), ("ce_id", m.id.encode())],
                    )
                    for m in stream.messages
                ),
            )
        if by_project:  # alert rules' input (trackpipe.alerting.kafka)
            sent += await forward_records(
                self._producer, self.names.alert_input, self.partitions, "conversions", by_project
            )
        for fut in sent:
            await fut
        sent = await send_many(
            self._producer,
            self.names.outbound_state,
            ((tp.partition, key.encode(), value, []) for key, value in changed.items()),
        )
        for fut in sent:
            await fut
        self.digests.put_many(tp.partition, changed)
        self.planned += len(due)
        last = records[-1].offset  # type: ignore[attr-defined]
        await self._consumer.commit({tp: last + 1})
