"""All stages in one process: what the embedded runner (and the tests) drive.

``process_records`` decodes a batch of envelope records from the events log, runs the visitor stage on
its events and then passes the stage messages around (click, fingerprint, visitor, conversion) until
none is left, exactly as the Faust topology does through its repartition topics. State writes are staged:
the runner calls ``commit(offset)`` once the batch's rows are stored (state and input offset are then
committed together, atomically when the state backend is SQLite), or ``discard()`` to retry the batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from processors.clicks import ClickStage
from processors.config import ProcessingConfig
from processors.conversions import ConversionStage
from processors.counting import CountingConfig, CountingStep
from processors.fingerprints import FingerprintStage
from processors.gcpause import gc_paused
from processors.messages import (
    STAGES,
    Attributed,
    ClickLookup,
    ClickReg,
    FpLookup,
    FpReg,
    Message,
    Resolved,
    Stage,
)
from processors.outcome import DeadLetter, DeadLetterReason, DropReason
from processors.stage import StageOutput
from processors.store import DictStore, KeyValueStore, StagedStore, Sweeper
from processors.visitors import SourceEvent, VisitorStage
from schemas.envelope import EnvelopeError, decode_envelope
from schemas.events import Event
from schemas.rows import ProcessedBatch

#: the counting step's store (processors.counting), swept of expired keys once a day of stream time (a
#: visitor's days expire after the horizon: an hourly full scan would buy nothing)
COUNTING = "counting"
COUNTING_SWEEP_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One envelope record of the events log / topic and where it was read."""

    topic: str
    partition: int
    offset: int
    payload: bytes


@dataclass
class StageCounts:
    """Outcomes of one stage within a batch (the in-process pipeline runs them all)."""

    dropped: Counter[DropReason] = field(default_factory=Counter)
    merged: int = 0

    def add(self, out: StageOutput) -> None:
        self.dropped.update(out.dropped)
        self.merged += out.merged


@dataclass
class BatchResult:
    batch: ProcessedBatch
    dropped: Counter[DropReason] = field(default_factory=Counter)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    merged: int = 0
    stage_counts: dict[str, StageCounts] = field(default_factory=dict)

    @property
    def rows(self) -> ProcessedBatch:
        return self.batch


class StateBackend(Protocol):
    """Durable home of the stage states plus the input offset they describe."""

    def store(self, stage: str) -> KeyValueStore:
        """A stage's store (or the counting step's: ``"counting"``)."""

    def offset(self) -> int | None: ...

    def commit(self, offset: int) -> None: ...

    def rollback(self) -> None:
        """Forget writes made since the last commit (a commit that failed: e.g. a full disk)."""


class Stages:
    """One instance of every stage (shared by the in-process pipeline and the Faust agents)."""

    def __init__(self, config: ProcessingConfig):
        self.config = config
        self.visitor = VisitorStage(config)
        self.click = ClickStage(config)
        self.fingerprint = FingerprintStage(config)
        self.conversion = ConversionStage(config)

    def now_ms(self) -> int:
        return max(self.visitor.now_ms, self.click.now_ms, self.fingerprint.now_ms)

    def advance(self) -> None:
        """A batch is done: stream time (for expiry) moves to the newest time seen."""
        for stage in (self.visitor, self.click, self.fingerprint):
            stage.advance()

    def run(self, stage: Stage, store: KeyValueStore, msgs: Sequence[Message]) -> StageOutput:
        """Run one stage on the stage messages addressed to it."""
        if stage == "click":
            return self.click.process(store, [m for m in msgs if isinstance(m, ClickReg | ClickLookup)])
        if stage == "fingerprint":
            return self.fingerprint.process(store, [m for m in msgs if isinstance(m, FpReg | FpLookup)])
        if stage == "visitor":
            return self.visitor.process(store, [], [m for m in msgs if isinstance(m, Resolved)])
        return self.conversion.process(store, [m for m in msgs if isinstance(m, Attributed)])


def group_by_stage(msgs: Iterable[Message]) -> dict[Stage, list[Message]]:
    from processors.messages import route

    groups: dict[Stage, list[Message]] = {}
    for m in msgs:
        groups.setdefault(route(m)[0], []).append(m)
    return groups


def decode_source(records: Iterable[bytes | SourceRecord]) -> tuple[list[SourceEvent], list[DeadLetter]]:
    sources: list[SourceEvent] = []
    dead: list[DeadLetter] = []
    for rec in records:
        raw = rec.payload if isinstance(rec, SourceRecord) else rec
        try:
            events = decode_envelope(raw)
        except EnvelopeError as exc:
            dead.append(DeadLetter(DeadLetterReason.UNDECODABLE, str(exc), raw))
            continue
        if isinstance(rec, SourceRecord):
            sources.extend(SourceEvent(e, rec.topic, rec.offset) for e in events)
        else:
            sources.extend(SourceEvent(e) for e in events)
    return sources, dead


class ConversionPipeline:
    """``counting``: also keep the Top-5 counters (processors.counting; the embedded runner's one writer)
    in a store of their own, committed with the stages' stores."""

    def __init__(
        self,
        config: ProcessingConfig | None = None,
        state: StateBackend | None = None,
        counting: CountingConfig | None = None,
    ):
        self.config = config or ProcessingConfig()
        self.stages = Stages(self.config)
        self.state = state
        backing: Mapping[Stage, KeyValueStore] = (
            {s: state.store(s) for s in STAGES} if state else {s: DictStore() for s in STAGES}
        )
        self.stores: dict[str, StagedStore] = {s: StagedStore(backing[s]) for s in STAGES}
        self.sweeper = Sweeper()
        self.counting = CountingStep(counting) if counting is not None else None
        if self.counting is not None:
            self.stores[COUNTING] = StagedStore(state.store(COUNTING) if state else DictStore())
            self.counting_sweeper = Sweeper(COUNTING_SWEEP_MS)

    def committed_offset(self) -> int | None:
        return self.state.offset() if self.state else None

    def process_records(self, records: Iterable[bytes | SourceRecord]) -> BatchResult:
        with gc_paused():
            sources, dead = decode_source(records)
            result = self._run(sources)
        result.dead_letters.extend(dead)
        return result

    def process_events(self, events: Iterable[Event]) -> BatchResult:
        """Process events as one batch and commit the state (tests, benchmarks)."""
        with gc_paused():
            result = self._run([SourceEvent(e) for e in events])
        self.commit()
        return result

    def _run(self, sources: list[SourceEvent]) -> BatchResult:
        out = self.stages.visitor.process(self.stores["visitor"], sources, [])
        by_stage: dict[str, StageCounts] = {"visitor": StageCounts(Counter(out.dropped), out.merged)}
        pending, out.messages = out.messages, []
        while pending:
            groups = group_by_stage(pending)
            pending = []
            for stage in ("click", "fingerprint", "visitor", "conversion"):
                if stage in groups:
                    step = self.stages.run(stage, self.stores[stage], groups[stage])
                    pending.extend(step.messages)
                    step.messages = []
                    by_stage.setdefault(stage, StageCounts()).add(step)
                    out.extend(step)
        self.stages.advance()
        now = self.stages.now_ms()
        for name, store in self.stores.items():
            if name != COUNTING:
                self.sweeper.maybe_sweep(name, store, now)
        batch = out.batch()
        if self.counting is not None:
            batch = self._count(batch, now)
        return BatchResult(batch, out.dropped, out.dead_letters, out.merged, by_stage)

    def _count(self, batch: ProcessedBatch, now: int) -> ProcessedBatch:
        """The counters the batch's rows change, with the rows (the sink writes them after)."""
        assert self.counting is not None
        store = self.stores[COUNTING]
        counted = self.counting.apply(store, batch.events, batch.conversions, now)
        self.counting_sweeper.maybe_sweep(COUNTING, store, now)
        if not (counted.goal_days or counted.goal_pairs or counted.visit_pairs or counted.ready):
            return batch
        return batch.model_copy(
            update={
                "goal_days": tuple(counted.goal_days),
                "goal_pairs": tuple(counted.goal_pairs),
                "visit_pairs": tuple(counted.visit_pairs),
                "counters_ready": tuple(counted.ready),
            }
        )

    def commit(self, offset: int | None = None) -> None:
        """The batch's rows are stored: make its state changes (and ``offset``) durable."""
        for store in self.stores.values():
            store.commit()
        if self.state is not None and offset is not None:
            self.state.commit(offset)
        if self.counting is not None:
            self.counting.committed()

    def discard(self) -> None:
        """Forget the state changes of the batch (it will be processed again), also those a failed
        ``commit`` had already handed to the state backend."""
        for store in self.stores.values():
            store.discard()
        if self.state is not None:
            self.state.rollback()
