"""The one batch protocol (processors.batch) driven with an in-memory source, state and sink: retries,
a crash before the commit and its replay, a poison record, a sink that refuses everything, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from processors.batch import BatchRunner, OutcomeCounts, RetryPolicy, is_retriable
from processors.outcome import DeadLetter, DeadLetterReason
from processors.pipeline import BatchResult, ConversionPipeline, SourceRecord
from processors.store import DictStore
from schemas.envelope import encode_envelope
from schemas.events import Event, EventType
from schemas.ids import new_event_id
from schemas.rows import Conversion, ProcessedBatch

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def hit(visitor: str, goal: str, minute: int) -> Event:
    at = T0 + timedelta(minutes=minute)
    return Event(
        event_id=new_event_id(),
        type=EventType.HIT_GOAL,
        received_at=at,
        occurred_at=at,
        account_id="p",
        project_id="p",
        visitor_id=visitor,
        goal_ids=(goal,),
    )


class Crash(BaseException):
    """The process dies: nothing after this line runs, nothing is discarded."""


class SinkRefused(Exception):
    retriable = False


class SinkDown(Exception):
    retriable = True


class MemoryState:
    """A state backend kept in memory: the stores survive a 'crash' with what was committed."""

    def __init__(self) -> None:
        self.stores = {s: DictStore() for s in ("visitor", "click", "fingerprint", "conversion")}
        self.committed: int | None = None

    def store(self, stage: str) -> DictStore:
        return self.stores[stage]

    def offset(self) -> int | None:
        return self.committed

    def commit(self, offset: int) -> None:
        self.committed = offset

    def rollback(self) -> None:
        pass  # writes reach the DictStores only through StagedStore.commit


class MemoryPort:
    """Records are SourceRecords at offsets 0..n-1 of one partition; the sink keeps every insert."""

    def __init__(self, pipeline: ConversionPipeline, state: MemoryState):
        self.pipeline = pipeline
        self.state = state
        self.inserts: dict[str, ProcessedBatch] = {}
        self.dead: list[DeadLetter] = []
        self.down = 0  # retriable sink failures still to come
        self.refuse_all = False
        self.crash_before_commit = False

    def process(self, records: Sequence[SourceRecord]) -> BatchResult:
        return self.pipeline.process_records(records)

    def token(self, records: Sequence[SourceRecord]) -> str:
        return f"m:{records[0].offset}-{records[-1].offset}"

    def raw(self, record: SourceRecord) -> bytes:
        return record.payload

    async def write(self, rows: ProcessedBatch, token: str) -> None:
        if self.down:
            self.down -= 1
            raise SinkDown("sink unavailable")
        if self.refuse_all or any(e.goal_ids == ("poison",) for e in rows.events):
            raise SinkRefused("Code: 53. Type mismatch in a column of this batch")
        self.inserts.setdefault(token, rows)  # an insert repeated with its token is dropped

    async def deliver(self, work: BatchResult) -> None:
        self.dead.extend(work.dead_letters)

    async def quarantine(self, letters: Sequence[DeadLetter]) -> None:
        self.dead.extend(letters)

    async def commit(self, records: Sequence[SourceRecord]) -> None:
        if self.crash_before_commit:
            raise Crash
        self.pipeline.commit(records[-1].offset + 1)

    def discard(self) -> None:
        self.pipeline.discard()

    def conversions(self) -> dict[tuple[str, str], tuple[object, ...]]:
        """(visitor, goal) -> what counts of the latest row per conversion key (as ClickHouse keeps it):
        its key, event, revenue, merged events, deletion."""
        latest: dict[tuple[str, str, str], Conversion] = {}
        for rows in self.inserts.values():
            for c in rows.conversions:
                k = (c.project_id, c.goal_id, c.conversion_key)
                held = latest.get(k)
                if held is None or c.version >= held.version:
                    latest[k] = c
        return {
            (c.visitor_id, c.goal_id): (
                c.conversion_key,
                c.event_id,
                c.revenue,
                c.events_merged,
                c.is_deleted,
            )
            for c in latest.values()
        }


def records(events: list[Event]) -> list[SourceRecord]:
    return [SourceRecord("t", 0, i, encode_envelope([e])) for i, e in enumerate(events)]


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []
        self.hook: Callable[[int], None] | None = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.hook is not None:
            self.hook(len(self.delays))
        await asyncio.sleep(0)


def runner(port: MemoryPort, counts: OutcomeCounts, sleeps: Sleeps, **policy: float) -> BatchRunner:
    return BatchRunner(port, "test", counts, RetryPolicy(**policy), sleep=sleeps)  # type: ignore[arg-type]


EVENTS = [hit(f"v{i % 5}", f"g{i % 3}", i) for i in range(20)]


async def clean_run() -> dict[tuple[str, str], tuple[object, ...]]:
    state = MemoryState()
    port = MemoryPort(ConversionPipeline(state=state), state)
    await BatchRunner(port, "test", OutcomeCounts()).run(records(EVENTS))
    return port.conversions()


async def test_retriable_failures_are_retried_with_backoff_until_the_batch_commits():
    state = MemoryState()
    port = MemoryPort(ConversionPipeline(state=state), state)
    port.down = 3
    counts, sleeps = OutcomeCounts(), Sleeps()
    r = runner(port, counts, sleeps, first_backoff_s=0.1, max_backoff_s=0.3)
    await r.run(records(EVENTS))
    assert sleeps.delays == [0.1, 0.2, 0.3]
    assert counts.batches[("test", "retried")] == 3 and counts.batches[("test", "committed")] == 1
    assert state.committed == len(EVENTS) and r.health() is None
    assert port.conversions() == await clean_run()
    assert counts.records["test"] == len(EVENTS) and counts.rows["events"] == len(EVENTS)


async def test_a_crash_before_the_commit_is_replayed_from_the_committed_state_exactly_once():
    state = MemoryState()
    port = MemoryPort(ConversionPipeline(state=state), state)
    recs = records(EVENTS)
    await BatchRunner(port, "test", OutcomeCounts()).run(recs[:8])
    port.crash_before_commit = True
    with pytest.raises(Crash):  # rows of 8..15 are written, the state and position are not committed
        await BatchRunner(port, "test", OutcomeCounts()).run(recs[8:16])
    assert state.committed == 8
    # restart: a new pipeline on the committed state, from the committed position, other batching
    restarted = MemoryPort(ConversionPipeline(state=state), state)
    restarted.inserts = port.inserts
    counts = OutcomeCounts()
    r = BatchRunner(restarted, "test", counts)
    for start in range(state.committed, len(recs), 5):
        await r.run(recs[start : start + 5])
    assert restarted.conversions() == await clean_run()
    assert state.committed == len(recs)


async def test_a_poison_record_is_isolated_and_quarantined_and_the_rest_commits():
    events = [*EVENTS[:5], hit("v-poison", "poison", 30), *EVENTS[5:9]]
    state = MemoryState()
    port = MemoryPort(ConversionPipeline(state=state), state)
    counts, sleeps = OutcomeCounts(), Sleeps()
    r = runner(port, counts, sleeps, rejected_attempts=2)
    recs = records(events)
    await r.run(recs)
    assert state.committed == len(recs)  # past every record: the worker is not wedged
    assert [(d.reason, d.raw) for d in port.dead] == [(DeadLetterReason.SINK_REJECTED, recs[5].payload)]
    assert "Type mismatch" in port.dead[0].detail
    assert counts.batches[("test", "quarantined")] == 1
    assert counts.outcomes[("test", "dead_letter", "sink_rejected")] == 1
    assert sum(counts.records.values()) == len(recs) - 1
    # every other record is stored, as a run without the poison record stores it
    state2 = MemoryState()
    port2 = MemoryPort(ConversionPipeline(state=state2), state2)
    await BatchRunner(port2, "test", OutcomeCounts()).run(records(EVENTS[:9]))
    assert port.conversions() == port2.conversions()
    assert r.health() is None and not r.paused


async def test_a_sink_refusing_everything_pauses_processing_instead_of_dead_lettering_everything():
    state = MemoryState()
    port = MemoryPort(ConversionPipeline(state=state), state)
    port.refuse_all = True
    counts, sleeps = OutcomeCounts(), Sleeps()
    r = runner(port, counts, sleeps, rejected_attempts=1, max_consecutive_quarantines=2)
    paused_at: list[int] = []

    def heal(n: int) -> None:  # once paused, a while later the sink is repaired
        if r.paused and not paused_at:
            paused_at.append(n)
            assert r.health() is not None and "stalled" in r.health()  # type: ignore[operator]
        if paused_at and n >= paused_at[0] + 5:
            port.refuse_all = False

    sleeps.hook = heal
    recs = records(EVENTS[:8])
    await r.run(recs)
    assert len(port.dead) == 2 and counts.batches[("test", "quarantined")] == 2  # no more than the limit
    assert state.committed == len(recs) and r.health() is None and not r.paused
    assert sum(counts.records.values()) == len(recs) - 2


async def test_undecodable_records_become_dead_letters_with_their_reason():
    state = MemoryState()
    port = MemoryPort(ConversionPipeline(state=state), state)
    counts = OutcomeCounts()
    recs = [*records(EVENTS[:3]), SourceRecord("t", 0, 3, b"garbage")]
    await BatchRunner(port, "test", counts).run(recs)
    assert [(d.reason, d.raw) for d in port.dead] == [(DeadLetterReason.UNDECODABLE, b"garbage")]
    assert counts.outcomes[("test", "dead_letter", "undecodable")] == 1


async def test_merged_duplicates_and_replays_are_counted_per_stage():
    state = MemoryState()
    port = MemoryPort(ConversionPipeline(state=state), state)
    counts = OutcomeCounts()
    tx = [
        Event(
            event_id=new_event_id(),
            type=EventType.TRANSACTION,
            received_at=T0,
            occurred_at=T0,
            account_id="p",
            project_id="p",
            visitor_id=f"v{i}",
            goal_ids=("sale",),
            transaction_id="ORDER-1",
            revenue="10",
        )
        for i in range(3)
    ]
    recs = records(tx)
    await BatchRunner(port, "test", counts).run(recs)
    assert counts.outcomes[("conversion", "merged", "")] == 2  # one order, three events
    await BatchRunner(port, "test", counts).run(recs)  # redelivered: already applied
    assert counts.outcomes[("visitor", "dropped", "replay")] == 3


def test_retriable_classification():
    assert is_retriable(SinkDown()) and not is_retriable(SinkRefused())
    assert is_retriable(OSError(28, "No space left on device")) and is_retriable(TimeoutError())
    assert not is_retriable(KeyError("a core bug"))
