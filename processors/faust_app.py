"""The Faust topology: one agent per stage, feeding envelope records to the same cores the embedded runner
uses (processors.pipeline.Stages), state in Faust tables.

Topics (all with the same partition count N, so Faust co-partitions them; created by
``trackpipe topics create`` / :func:`topology_topics`):

==================================  ==============  ===================================================
topic                               key             carries
==================================  ==============  ===================================================
``<events>``                        visitor id      canonical event envelopes from the edge
``<app>-visitor``                   visitor id      ``Resolved`` conversions (from click / fingerprint)
``<app>-click``                     project+click   click registrations, postbacks naming a click
``<app>-fingerprint``               project+IP+UA   clicks and id-less conversions (auto-attribution)
``<app>-conversion``                project+key     ``Attributed`` conversion events
``<events>.conversions`` (output)   project+key     attributed conversion rows, latest version
``<events>.sessions`` (output)      visitor id      session rows
``<events>.deadletter``             -               undecodable records: original bytes, ``reason`` header
``<app>-<stage>-changelog``         stage key       Faust table changelogs (compacted), N partitions
==================================  ==============  ===================================================

Records are envelopes (many messages each), produced to an explicit partition computed like Kafka's
default partitioner (murmur2 of the key), and the tables use the same partitioner
(``use_partitioner=True``), so a key's state lives in the changelog partition of its input partition.

Exactness does not come from Faust's exactly-once mode (unreliable: faust-streaming #323, #502, #517)
but from idempotent state and sinks. Per batch (``take_events``): run the core -> write the rows to
ClickHouse (retried until done) -> send the stage messages and output rows and wait for the broker's
acks -> apply the state writes to the tables and wait for their changelog records' acks -> ack.
A crash anywhere before the ack replays the batch: visitor state skips records it already applied
(per-key offset watermark), the other stages merge idempotently, ClickHouse keeps one row per key.
If the worker is stopped while a batch cannot be completed, it exits (status 75) without acking
(fail-stop); a batch that fails makes it exit (status 70) without acking.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP

from processors.faust_consumer import InOrderAdmission, StallWatchdog, install_gapless_consumer
from processors.faust_store import partition_for, table_state
from processors.messages import (
    STAGES,
    Message,
    Resolved,
    Stage,
    decode_messages,
    encode_message_records,
    envelope_chunks,
    route,
)
from processors.outcome import DeadLetter
from processors.pipeline import ConversionPipeline, Stages
from processors.stage import StageOutput
from processors.store import StagedStore, expired_keys
from processors.visitors import SourceEvent
from schemas.envelope import ENVELOPE_VERSION, EnvelopeError, decode_envelope
from schemas.rows import ProcessedBatch

log = logging.getLogger(__name__)

BatchWriter = Callable[[ProcessedBatch, str], Awaitable[None]]
SWEEP_EVERY_MS = 3_600_000
SHUTDOWN_GRACE_S = 20.0
FLUSH_TIMEOUT_S = 120.0
WATCHDOG_EVERY_S = 5.0


@dataclass(frozen=True)
class TopologyNames:
    events: str
    app_id: str

    @property
    def deadletter(self) -> str:
        return f"{self.events}.deadletter"

    def stage(self, stage: Stage) -> str:
        return f"{self.app_id}-{stage}"

    @property
    def conversions_out(self) -> str:
        return f"{self.events}.conversions"

    @property
    def sessions_out(self) -> str:
        return f"{self.events}.sessions"

    def all(self) -> list[str]:
        """Every topic the topology reads or writes, except Faust's own changelogs."""
        return [
            self.events,
            self.deadletter,
            *(self.stage(s) for s in STAGES if s != "visitor"),
            self.stage("visitor"),
            self.conversions_out,
            self.sessions_out,
        ]


def topology_topics(events_topic: str, app_id: str) -> list[str]:
    return TopologyNames(events_topic, app_id).all()


def batch_token(spans: Sequence[tuple[str, int, int]]) -> str:
    """Deterministic id of a batch: per topic partition, the first and last offset it holds."""
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for topic, partition, offset in spans:
        lo, hi = ranges.get((topic, partition), (offset, offset))
        ranges[(topic, partition)] = (min(lo, offset), max(hi, offset))
    return ",".join(f"{t}:{p}:{lo}-{hi}" for (t, p), (lo, hi) in sorted(ranges.items()))


def encode_rows(kind: str, rows: Sequence[Any]) -> list[bytes]:
    """Output envelope records of ``rows``, each within the stage record size limit."""
    head = b'{"envelope":%d,"kind":"%s","schema":1,"items":[' % (ENVELOPE_VERSION, kind.encode())
    return envelope_chunks(head, (r.__pydantic_serializer__.to_json(r) for r in rows))


class TableStore:
    """A Faust table as a stage store: str keys, bytes values; ``items`` only for owned partitions.

    Writes go to the table's store and to its changelog at the key's partition, computed here (the
    producer's partitioner needs topic metadata it may not have fetched yet), through
    processors.faust_store (memory store, or RocksDB written after the changelog acks)."""

    def __init__(self, table: Any, owned: Callable[[str], bool], partitions: int):
        self.table = table
        self.owned = owned
        self.partitions = partitions
        self.state = table_state(table, partitions)
        self.sent: list[Any] = []  # pending changelog writes of the current batch

    async def delivered(self) -> None:
        """Wait until every changelog record written since the last call is acknowledged."""
        sent, self.sent = self.sent, []
        await self.state.delivered(sent)

    def get(self, key: str) -> bytes | None:
        return self.state.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.sent.append(self.state.put(key, value))

    def delete(self, key: str) -> None:
        pending = self.state.delete(key)
        if pending is not None:
            self.sent.append(pending)

    def items(self) -> Any:
        for key, value in self.state.items():
            if self.owned(key):
                yield key, value


def build_faust_app(
    *,
    app_id: str,
    broker: str,
    topic: str,
    partitions: int,
    writer: BatchWriter,
    batch_max: int = 2000,
    batch_within_s: float = 0.5,
    store: str = "memory://",
    broker_options: dict[str, Any] | None = None,
    pipeline: ConversionPipeline | None = None,
    stages: Stages | None = None,
) -> faust.App:
    names = TopologyNames(topic, app_id)
    app = faust.App(
        app_id,
        broker=broker,
        store=store,
        web_enabled=False,
        topic_partitions=partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=batch_max,
        broker_commit_interval=1.0,
        **(broker_options or {}),
    )
    cores = stages or (pipeline.stages if pipeline else Stages(ConversionPipeline().config))
    app.conf.trackpipe_stats = {"batches": 0, "events": 0, "conversions": 0, "messages": 0}

    def raw_topic(*names_: str) -> Any:
        return app.topic(
            *names_,
            value_type=bytes,
            value_serializer="raw",
            key_type=bytes,
            key_serializer="raw",
            partitions=partitions,
        )

    out_topics: dict[Stage, Any] = {s: raw_topic(names.stage(s)) for s in STAGES}
    deadletter_topic = raw_topic(names.deadletter)
    conversions_topic = raw_topic(names.conversions_out)
    sessions_topic = raw_topic(names.sessions_out)
    input_topic_of: dict[Stage, str] = {s: names.stage(s) for s in STAGES}
    input_topic_of["visitor"] = names.events

    install_gapless_consumer(app, {names.events, *(names.stage(s) for s in STAGES)})

    tables: dict[Stage, StagedStore] = {}
    table_stores: dict[Stage, TableStore] = {}
    for s in STAGES:
        table = app.Table(
            f"{s}-state",
            default=None,
            key_type=bytes,  # bytes -> the "raw" serializer, also for the changelog (recovery)
            value_type=bytes,
            schema=faust.Schema(
                key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            ),
            partitions=partitions,
            use_partitioner=True,
        )

        def owned(key: str, _s: Stage = s) -> bool:
            tp = TP(input_topic_of[_s], partition_for(key, partitions))
            return tp in app.assignor.assigned_actives()

        table_stores[s] = TableStore(table, owned, partitions)
        tables[s] = StagedStore(table_stores[s])
    swept: dict[Stage, int] = dict.fromkeys(STAGES, 0)

    async def deliver(out: StageOutput) -> None:
        futures = []
        per_target: dict[tuple[Stage, int], list[Message]] = {}
        for m in out.messages:
            stage, key = route(m)
            per_target.setdefault((stage, partition_for(key, partitions)), []).append(m)
        for (stage, part), msgs in per_target.items():
            for value in encode_message_records(msgs):
                futures.append(await out_topics[stage].send(value=value, partition=part))
        batch = out.batch()
        by_part: dict[int, list[Any]] = {}
        for c in batch.conversions:
            by_part.setdefault(partition_for(f"{c.project_id}\x1f{c.conversion_key}", partitions), []).append(
                c
            )
        for part, rows in by_part.items():
            for value in encode_rows("conversions", rows):
                futures.append(await conversions_topic.send(value=value, partition=part))
        by_part = {}
        for srow in batch.sessions:
            by_part.setdefault(partition_for(srow.visitor_id, partitions), []).append(srow)
        for part, rows in by_part.items():
            for value in encode_rows("sessions", rows):
                futures.append(await sessions_topic.send(value=value, partition=part))
        for dead in out.dead_letters:
            futures.append(
                await deadletter_topic.send(value=dead.raw, headers={"reason": dead.reason.encode()})
            )
        for fut in futures:
            await fut

    async def flush(stage: Stage) -> None:
        """The batch's state changes are on their changelog (acknowledged) before the batch is acked."""
        try:
            await asyncio.wait_for(table_stores[stage].delivered(), timeout=FLUSH_TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError(f"{stage} changelog not acknowledged within {FLUSH_TIMEOUT_S}s") from None

    order = InOrderAdmission()
    watchdog = StallWatchdog(order)

    @app.timer(interval=WATCHDOG_EVERY_S)
    async def restart_stalled_partitions() -> None:
        await watchdog.check(app)

    async def run_batch(stage: Stage, events: Sequence[Any]) -> None:
        events = await order.admit(app, events)
        if not events:
            return
        spans = [(e.message.topic, e.message.partition, e.message.offset) for e in events]
        store = tables[stage]
        dead: list[DeadLetter] = []
        if stage == "visitor":
            sources: list[SourceEvent] = []
            resolved: list[Resolved] = []
            for e in events:
                msg = e.message
                try:
                    if msg.topic == names.events:
                        sources.extend(
                            SourceEvent(ev, msg.topic, msg.offset) for ev in decode_envelope(e.value)
                        )
                    else:
                        resolved.extend(m for m in decode_messages(e.value) if isinstance(m, Resolved))
                except EnvelopeError as exc:
                    dead.append(DeadLetter(f"{msg.topic}: {exc}", e.value))
            out = cores.visitor.process(store, sources, resolved)
        else:
            msgs: list[Message] = []
            for e in events:
                try:
                    msgs.extend(decode_messages(e.value))
                except EnvelopeError as exc:
                    dead.append(DeadLetter(f"{e.message.topic}: {exc}", e.value))
            out = cores.run(stage, store, msgs)
        out.dead_letters.extend(dead)
        cores.advance()
        now = cores.now_ms()
        if now - swept[stage] >= SWEEP_EVERY_MS:
            swept[stage] = now
            for key in expired_keys(store, now):
                store.delete(key)
        batch = out.batch()
        token = f"{app_id}/{stage}|{batch_token(spans)}"
        try:
            if not batch.is_empty:
                await _write_until_done(writer, batch, token)
            await deliver(out)
            store.commit()
            await flush(stage)
        except BaseException:
            store.discard()
            table_stores[stage].sent.clear()
            raise
        log.debug(
            "%s batch %s: %d messages, %d conversions",
            stage,
            token,
            len(out.messages),
            len(batch.conversions),
        )
        stats = app.conf.trackpipe_stats
        stats["batches"] += 1
        stats["events"] += len(batch.events)
        stats["conversions"] += len(batch.conversions)
        stats["messages"] += len(out.messages)
        for reason, n in out.dropped.items():
            stats[f"dropped_{reason}"] = stats.get(f"dropped_{reason}", 0) + n

    async def guarded(stage: Stage, events: Sequence[Any]) -> None:
        """Finish the batch even if the agent is cancelled (take_events acks in its ``finally``)."""
        task = asyncio.ensure_future(run_batch(stage, events))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and not task.cancelled() and task.exception() is None:
                raise
            done, _ = await asyncio.wait([task], timeout=SHUTDOWN_GRACE_S)
            if not done or task.cancelled() or task.exception() is not None:
                log.critical("stopped while a %s batch was not complete: exiting without ack", stage)
                os._exit(75)
            raise
        except Exception:
            # take_events would ack the batch on the way out: never let an unfinished batch be acked
            log.critical("%s batch failed: exiting without ack (fail-stop)", stage, exc_info=True)
            os._exit(70)

    def make_agent(stage: Stage, source: Any) -> None:
        async def agent(stream: faust.StreamT[bytes]) -> None:
            async for events in stream.take_events(batch_max, within=batch_within_s):  # type: ignore[attr-defined]
                await guarded(stage, events)

        agent.__name__ = f"{stage}_agent"
        app.agent(source, name=f"{app_id}.{stage}")(agent)

    make_agent("visitor", raw_topic(names.events, names.stage("visitor")))
    for s in STAGES:
        if s != "visitor":
            make_agent(s, raw_topic(names.stage(s)))
    return app


async def _write_until_done(writer: BatchWriter, batch: ProcessedBatch, token: str) -> None:
    backoff = 0.1
    while True:
        try:
            await writer(batch, token)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            retriable = getattr(exc, "retriable", True)
            log.error(
                "sink write of %s failed (retriable=%s), retrying in %.1fs: %s",
                token,
                retriable,
                backoff,
                exc,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
