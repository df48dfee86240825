"""Pure record accumulator: groups the events of concurrent requests by target partition.

No I/O and no event loop here (aiokafka's producer keeps the same split): the sender drains ready
records and reports back which tickets they carried. A :class:`Ticket` stands for one request; it is
done when every record holding one of its events is acknowledged, and failed as soon as one is not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from schemas.envelope import ENVELOPE_VERSION
from schemas.events import SCHEMA_VERSION, Event

_HEAD = b'{"envelope":%d,"schema":%d,"events":[' % (ENVELOPE_VERSION, SCHEMA_VERSION)
_TAIL = b"]}"
_OVERHEAD = len(_HEAD) + len(_TAIL)


class Ticket:
    """Completion state of one request's events. ``on_done`` gets None on success or the error."""

    __slots__ = ("_on_done", "error", "finished", "pending")

    def __init__(self, on_done: Callable[[BaseException | None], None]):
        self.pending = 0
        self.error: BaseException | None = None
        self.finished = False
        self._on_done = on_done

    def _part_done(self, error: BaseException | None) -> None:
        if self.finished:
            return
        if error is not None:
            self.finished = True
            self.error = error
            self._finish(error)
            return
        self.pending -= 1
        if self.pending == 0:
            self.finished = True
            self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        """Called once, when the ticket is done (a subclass may act on it without a callback)."""
        self._on_done(error)


@dataclass
class ReadyRecord:
    """One envelope record for one partition, with the tickets whose events it carries."""

    partition: int
    payload: bytes
    event_count: int
    tickets: list[Ticket] = field(default_factory=list)

    def complete(self, error: BaseException | None = None) -> None:
        for t in self.tickets:
            t._part_done(error)


@dataclass
class _Open:
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    tickets: list[Ticket] = field(default_factory=list)


class RecordAccumulator:
    def __init__(
        self,
        partitions: int,
        partition_of: Callable[[str, int], int],
        *,
        max_events_per_record: int = 500,
        max_record_bytes: int = 900_000,
    ):
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self._partition_of = partition_of
        self.max_events = max_events_per_record
        self.max_bytes = max_record_bytes
        self._open: dict[int, _Open] = {}
        self._full: list[ReadyRecord] = []
        self.buffered_events = 0

    def append(self, events: Sequence[Event], ticket: Ticket) -> None:
        """Add one request's events. The ticket completes when all records carrying them are acked."""
        touched: set[int] = set()
        for ev in events:
            p = self._partition_of(ev.visitor_id, self.partitions)
            blob = ev.__pydantic_serializer__.to_json(ev)
            if len(blob) + len(_HEAD) + len(_TAIL) > self.max_bytes:
                raise ValueError(f"one event serializes to {len(blob)} bytes, above the record limit")
            rec = self._open.get(p)
            if rec is not None and (
                len(rec.parts) >= self.max_events or rec.size + len(blob) + 1 > self.max_bytes
            ):
                self._seal(p, rec)
                touched.discard(p)
                rec = None
            if rec is None:
                rec = self._open[p] = _Open(size=len(_HEAD) + len(_TAIL))
            rec.parts.append(blob)
            rec.size += len(blob) + 1
            if p not in touched:
                touched.add(p)
                rec.tickets.append(ticket)
                ticket.pending += 1
            self.buffered_events += 1
        if not events:
            ticket.pending += 1
            ticket._part_done(None)

    def append_serialized(self, key: str, blobs: Sequence[bytes], ticket: Ticket) -> None:
        """Add one request's events, already serialized (canonical Event JSON), all of the partition of
        ``key`` (the visitor id). Same records as :meth:`append` would make of the same events."""
        n = len(blobs)
        if not n:
            ticket.pending += 1
            ticket._part_done(None)
            return
        overhead = _OVERHEAD
        if n == 1:
            largest = len(blobs[0])
            total = largest + 1
        else:
            sizes = list(map(len, blobs))
            largest = max(sizes)
            total = sum(sizes) + n
        if largest + overhead > self.max_bytes:
            raise ValueError(f"one event serializes to {largest} bytes, above the record limit")
        p = self._partition_of(key, self.partitions)
        self.buffered_events += n
        rec = self._open.get(p)
        if rec is None:
            rec = self._open[p] = _Open(size=overhead)
        if len(rec.parts) + n <= self.max_events and rec.size + total <= self.max_bytes:
            rec.parts.extend(blobs)  # the common case: the whole request fits the open record
            rec.size += total
            rec.tickets.append(ticket)
            ticket.pending += 1
            return
        mine = False  # whether ``rec`` carries this ticket yet
        for blob in blobs:
            size = len(blob) + 1
            if rec.parts and (len(rec.parts) >= self.max_events or rec.size + size > self.max_bytes):
                self._seal(p, rec)
                rec = self._open[p] = _Open(size=overhead)
                mine = False
            if not mine:
                rec.tickets.append(ticket)
                ticket.pending += 1
                mine = True
            rec.parts.append(blob)
            rec.size += size

    def _seal(self, partition: int, rec: _Open) -> None:
        payload = b"".join((_HEAD, b",".join(rec.parts), _TAIL))  # one copy less than ``+``
        self._full.append(ReadyRecord(partition, payload, len(rec.parts), rec.tickets))
        self.buffered_events -= len(rec.parts)
        del self._open[partition]

    def has_full(self) -> bool:
        return bool(self._full)

    def __bool__(self) -> bool:
        return bool(self._open or self._full)

    def drain(self) -> list[ReadyRecord]:
        """Seal every open record and hand all ready records to the sender."""
        for p, rec in list(self._open.items()):
            self._seal(p, rec)
        out, self._full = self._full, []
        return out
