"""The processing core both runners drive: a batch of envelope records in, a ProcessedBatch out.

Framework-free: the Faust agent and the embedded runner only feed it records and hand its result to a
sink. Every record and event ends in an explicit outcome; drops and dead letters are returned, not hidden.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from processors.conversions import conversions_from_event
from processors.dedup import TransactionDedup
from processors.outcome import DeadLetter, Drop, Ok
from schemas.envelope import EnvelopeError, decode_envelope
from schemas.events import Event
from schemas.rows import Conversion, ProcessedBatch


@dataclass
class BatchResult:
    batch: ProcessedBatch
    dropped: Counter[str] = field(default_factory=Counter)
    dead_letters: list[DeadLetter] = field(default_factory=list)


class ConversionPipeline:
    def __init__(self, dedup: TransactionDedup | None = None):
        self.dedup = dedup or TransactionDedup()

    def process_records(self, records: Iterable[bytes]) -> BatchResult:
        events: list[Event] = []
        dead: list[DeadLetter] = []
        for raw in records:
            try:
                events.extend(decode_envelope(raw))
            except EnvelopeError as exc:
                dead.append(DeadLetter(str(exc), raw))
        result = self.process_events(events)
        result.dead_letters.extend(dead)
        return result

    def process_events(self, events: Iterable[Event]) -> BatchResult:
        kept: list[Event] = []
        conversions: list[Conversion] = []
        dropped: Counter[str] = Counter()
        for event in events:
            outcome = self.dedup.check(event)
            if isinstance(outcome, Drop):
                dropped["duplicate_transaction"] += 1
                # The raw event is still stored (analysts see every hit); it just makes no conversion.
                kept.append(event)
                continue
            assert isinstance(outcome, Ok)
            kept.append(event)
            conversions.extend(conversions_from_event(event))
        return BatchResult(ProcessedBatch(events=tuple(kept), conversions=tuple(conversions)), dropped)
