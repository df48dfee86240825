"""The Faust worker's side of the batch protocol (processors.batch): one :class:`StagePort` per stage.

A batch is the events one ``take_events`` call hands an agent. ``process`` decodes them and runs the
stage's core on the stage's table; ``write`` stores the rows in ClickHouse; ``deliver`` sends the stage
messages, output rows and dead letters and waits for the broker's acks; ``commit`` applies the staged
state to the table and waits for its changelog records' acks. The offsets are acknowledged by
``take_events`` when the batch returns, so a crash anywhere before replays the batch: the visitor stage
skips records it already applied (per-key offset watermark), the other stages merge idempotently,
ClickHouse keeps one row per key.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from processors.gcpause import gc_paused
from processors.messages import Message, Resolved, Stage, decode_messages, encode_message_records, route
from processors.outcome import DeadLetter, DeadLetterReason, DropReason
from processors.pipeline import Stages
from processors.runtime.faust.store import table_state
from processors.runtime.faust.topology import TopologyNames, batch_token, encode_rows
from processors.stage import StageOutput
from processors.store import StagedStore, Sweeper
from processors.visitors import SourceEvent
from schemas.envelope import EnvelopeError, decode_envelope
from schemas.partitioning import partition_for
from schemas.rows import ProcessedBatch

BatchWriter = Callable[[ProcessedBatch, str], Awaitable[None]]
FLUSH_TIMEOUT_S = 120.0


class ChangelogTimeout(RuntimeError):
    retriable = True


class TableStore:
    """A Faust table as a stage store: str keys, bytes values; ``items`` only for owned partitions.

    Writes go to the table's store and to its changelog at the key's partition, computed here (the
    producer's partitioner needs topic metadata it may not have fetched yet), through
    processors.runtime.faust.store (memory store, or RocksDB written after the changelog acks)."""

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


@dataclass
class StageWork:
    """What one stage batch produced (the :class:`processors.batch.Work` protocol, plus its output)."""

    out: StageOutput
    rows: ProcessedBatch
    dead_letters: list[DeadLetter]
    dropped: Counter[DropReason] = field(default_factory=Counter)
    merged: int = 0


@dataclass
class Outputs:
    """The topics a stage sends to (Faust topic objects); ``partitions``: the outputs' count (the stage
    topics have the generation's)."""

    stages: dict[Stage, Any]
    deadletter: Any
    conversions: Any
    sessions: Any
    partitions: int


class StagePort:
    def __init__(
        self,
        stage: Stage,
        *,
        app_id: str,
        names: TopologyNames,
        cores: Stages,
        table: TableStore,
        outputs: Outputs,
        writer: BatchWriter,
        partitions: int,
        sweeper: Sweeper,
    ):
        self.stage = stage
        self.app_id = app_id
        self.names = names
        self.cores = cores
        self.table = table
        self.store = StagedStore(table)
        self.outputs = outputs
        self.writer = writer
        self.partitions = partitions
        self.sweeper = sweeper

    def process(self, events: Sequence[Any]) -> StageWork:
        with gc_paused():
            return self._process(events)

    def _process(self, events: Sequence[Any]) -> StageWork:
        dead: list[DeadLetter] = []
        if self.stage == "visitor":
            sources: list[SourceEvent] = []
            resolved: list[Resolved] = []
            for e in events:
                msg = e.message
                try:
                    if msg.topic == self.names.events_in:
                        sources.extend(
                            SourceEvent(ev, msg.topic, msg.offset) for ev in decode_envelope(e.value)
                        )
                    else:
                        resolved.extend(m for m in decode_messages(e.value) if isinstance(m, Resolved))
                except EnvelopeError as exc:
                    dead.append(DeadLetter(DeadLetterReason.UNDECODABLE, f"{msg.topic}: {exc}", e.value))
            out = self.cores.visitor.process(self.store, sources, resolved)
        else:
            msgs: list[Message] = []
            for e in events:
                try:
                    msgs.extend(decode_messages(e.value))
                except EnvelopeError as exc:
                    dead.append(
                        DeadLetter(DeadLetterReason.UNDECODABLE, f"{e.message.topic}: {exc}", e.value)
                    )
            out = self.cores.run(self.stage, self.store, msgs)
        out.dead_letters.extend(dead)
        self.cores.advance()
        self.sweeper.maybe_sweep(self.stage, self.store, self.cores.now_ms())
        return StageWork(out, out.batch(), out.dead_letters, out.dropped, out.merged)

    def token(self, events: Sequence[Any]) -> str:
        spans = [(e.message.topic, e.message.partition, e.message.offset) for e in events]
        return f"{self.app_id}/{self.stage}|{batch_token(spans)}"

    def raw(self, event: Any) -> bytes:
        value: bytes = event.value
        return value

    async def write(self, rows: ProcessedBatch, token: str) -> None:
        await self.writer(rows, token)

    async def deliver(self, work: StageWork) -> None:
        futures = []
        per_target: dict[tuple[Stage, int], list[Message]] = {}
        for m in work.out.messages:
            stage, key = route(m)
            per_target.setdefault((stage, partition_for(key, self.partitions)), []).append(m)
        for (stage, part), msgs in per_target.items():
            for value in encode_message_records(msgs):
                futures.append(await self.outputs.stages[stage].send(value=value, partition=part))
        by_part: dict[int, list[Any]] = {}
        for c in work.rows.conversions:
            key = f"{c.project_id}\x1f{c.conversion_key}"
            by_part.setdefault(partition_for(key, self.outputs.partitions), []).append(c)
        for part, rows in by_part.items():
            for value in encode_rows("conversions", rows):
                futures.append(await self.outputs.conversions.send(value=value, partition=part))
        by_part = {}
        for srow in work.rows.sessions:
            by_part.setdefault(partition_for(srow.visitor_id, self.outputs.partitions), []).append(srow)
        for part, rows in by_part.items():
            for value in encode_rows("sessions", rows):
                futures.append(await self.outputs.sessions.send(value=value, partition=part))
        futures.extend(await self._send_dead_letters(work.dead_letters))
        for fut in futures:
            await fut

    async def quarantine(self, letters: Sequence[DeadLetter]) -> None:
        for fut in await self._send_dead_letters(letters):
            await fut

    async def _send_dead_letters(self, letters: Sequence[DeadLetter]) -> list[Any]:
        return [
            await self.outputs.deadletter.send(
                value=letter.raw,
                headers={"reason": str(letter.reason).encode(), "detail": letter.detail.encode()},
            )
            for letter in letters
        ]

    async def commit(self, events: Sequence[Any]) -> None:
        """The batch's state changes are on their changelog (acknowledged) before the batch is acked."""
        self.store.commit()
        try:
            await asyncio.wait_for(self.table.delivered(), timeout=FLUSH_TIMEOUT_S)
        except TimeoutError:
            raise ChangelogTimeout(
                f"{self.stage} changelog not acknowledged within {FLUSH_TIMEOUT_S}s"
            ) from None

    def discard(self) -> None:
        self.store.discard()
        self.table.sent.clear()
