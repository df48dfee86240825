"""What every stage returns, and typed state access on top of the key -> bytes store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from processors.codec import decoder, dumps
from processors.messages import Message
from processors.outcome import DeadLetter, Drop, DropReason, Merged, Outcome
from processors.store import KeyValueStore, StagedStore, pack, unpack
from schemas.events import Event
from schemas.instants import epoch_ms
from schemas.rows import Conversion, ExposureColumns, ProcessedBatch, SessionColumns

T = TypeVar("T")


@dataclass
class StageOutput:
    messages: list[Message] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    sessions: SessionColumns = field(default_factory=SessionColumns)  # rows as columns (decision 155)
    exposures: ExposureColumns = field(default_factory=ExposureColumns)
    conversions: list[Conversion] = field(default_factory=list)
    dropped: Counter[DropReason] = field(default_factory=Counter)
    merged: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def count(self, outcome: Outcome[Any]) -> None:
        """Record a Merged / Drop / DeadLetter outcome (Ok needs nothing)."""
        if isinstance(outcome, Drop):
            self.dropped[outcome.reason] += 1
        elif isinstance(outcome, Merged):
            self.merged += 1
        elif isinstance(outcome, DeadLetter):
            self.dead_letters.append(outcome)

    def batch(self) -> ProcessedBatch:
        """The rows, last version per key (a batch may update the same key several times)."""
        conv: dict[tuple[str, str, str], Conversion] = {}
        for c in self.conversions:
            k = (c.project_id, c.goal_id, c.conversion_key)
            if k not in conv or c.version >= conv[k].version:
                conv[k] = c
        # one dict of the model's fields, no validation: the rows are already of their types, and the
        # session and exposure columns stay columns (validating them would build every row)
        return ProcessedBatch.model_construct(
            events=tuple(self.events),
            session_ids=tuple(self.session_ids),
            conversions=tuple(conv.values()),
            sessions=self.sessions.latest(),
            exposures=self.exposures.latest(),
        )

    def extend(self, other: StageOutput) -> None:
        self.messages.extend(other.messages)
        self.events.extend(other.events)
        self.session_ids.extend(other.session_ids)
        self.sessions.extend(other.sessions)
        self.exposures.extend(other.exposures)
        self.conversions.extend(other.conversions)
        self.dropped.update(other.dropped)
        self.merged += other.merged
        self.dead_letters.extend(other.dead_letters)


def load(store: KeyValueStore, key: str, kind: type[T]) -> T | None:
    """The state of ``key``: the object staged in this batch, else decoded from the store."""
    return load_with(store, key, decoder(kind).decode)


def save(store: KeyValueStore, key: str, state: object, expires_at: datetime) -> None:
    expires_ms = epoch_ms(expires_at)
    save_with(store, key, state, dumps, expires_ms)


def load_with(store: KeyValueStore, key: str, decode: Callable[[bytes], T]) -> T | None:
    """Load once per key per batch: a state staged earlier in the batch is handed back as is."""
    if isinstance(store, StagedStore):
        staged = store.get_object(key)
        if staged is not None:
            return cast(T, staged)
    raw = store.get(key)
    if raw is None:
        return None
    return decode(unpack(raw)[1])


def save_with(
    store: KeyValueStore, key: str, state: T, encode: Callable[[T], bytes], expires_ms: int
) -> None:
    """Stage ``state`` (``encode(state)`` when the batch commits); plain stores get the bytes at once."""
    if isinstance(store, StagedStore):
        store.put_object(key, state, encode, expires_ms)
    else:
        store.put(key, pack(expires_ms, encode(state)))
