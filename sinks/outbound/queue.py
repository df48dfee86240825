"""The deliveries topic as a queue (distributed mode; pure: records in, state and records out).

A worker's outbound planner produces each due delivery once to ``<events>.deliveries`` (compacted,
partition = :func:`schemas.partitioning.partition_for` of the delivery id); the sender that owns a
partition reads it from the beginning to rebuild the partition's deliveries in memory, then keeps
reading it and writes every state change back to it. Three kinds of record, each under its own key so
compaction keeps the latest of each kind for a delivery:

=========  ===============  ===========================================================================
kind       key              value
=========  ===============  ===========================================================================
planned    ``p/<id>``       the delivery as planned: the exact request parts, created and due times
state      ``s/<id>``       the whole delivery after an attempt (or a manual retry), ``rev`` counting up
retry      ``r/<id>``       a manual retry asked for by an operator (the edge's admin API)
=========  ===============  ===========================================================================

Rules (:meth:`PartitionQueue.apply`): a ``planned`` record for an id already known changes nothing (a
planner replaying a batch after a crash plans the same id with the same body); a ``state`` record
replaces the delivery when its ``rev`` is higher; a ``retry`` record makes a failed or dead delivery
pending and due at the retry's time with a fresh schedule round. A tombstone (value ``None``) of a key
forgets that kind of record. Because a state record carries the whole delivery, compaction may drop the
planned record of a delivery that has a state record and nothing is lost.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

import orjson

from sinks.outbound.schedule import DeliveryStatus

RECORD_VERSION = 1
ACTIVE = (DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value)


class RecordKind(StrEnum):
    PLANNED = "p"
    STATE = "s"
    RETRY = "r"


KINDS = frozenset(k.value for k in RecordKind)


class QueueRecordError(ValueError):
    """A record that cannot be read (a newer format, or damage): skipped and counted by the caller."""

    retriable = False


@dataclass(frozen=True, slots=True)
class QueuedDelivery:
    id: str
    project: str
    goal_id: str
    event: str
    method: str
    url: str
    body: bytes
    created_at: float
    next_at: float | None
    status: str = DeliveryStatus.PENDING.value
    step: int = 0
    attempts: int = 0
    rev: int = 0
    link_id: str = ""
    last_attempt_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    dead_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE and self.next_at is not None


def record_key(kind: RecordKind, delivery_id: str) -> bytes:
    return f"{kind.value}/{delivery_id}".encode()


def parse_key(key: bytes) -> tuple[RecordKind, str]:
    text = key.decode("utf-8", "replace")
    kind, sep, delivery_id = text.partition("/")
    if not sep or not delivery_id or kind not in KINDS:
        raise QueueRecordError(f"unknown deliveries record key {text[:80]!r}")
    return RecordKind(kind), delivery_id


def encode_delivery(d: QueuedDelivery) -> bytes:
    fields = asdict(d)
    fields["body"] = base64.b64encode(d.body).decode()
    return orjson.dumps({"v": RECORD_VERSION, **fields})


def decode_delivery(value: bytes) -> QueuedDelivery:
    try:
        fields: dict[str, Any] = orjson.loads(value)
        if fields.pop("v", None) != RECORD_VERSION:
            raise QueueRecordError("deliveries record of another version")
        fields["body"] = base64.b64decode(fields["body"])
        return QueuedDelivery(**fields)
    except QueueRecordError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise QueueRecordError(f"undecodable deliveries record: {exc}") from None


def encode_retry(at: float) -> bytes:
    return orjson.dumps({"v": RECORD_VERSION, "at": at})


def decode_retry(value: bytes) -> float:
    try:
        fields = orjson.loads(value)
        if fields.get("v") != RECORD_VERSION:
            raise QueueRecordError("deliveries record of another version")
        return float(fields["at"])
    except QueueRecordError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise QueueRecordError(f"undecodable retry record: {exc}") from None


class PartitionQueue:
    """One partition's deliveries, rebuilt and kept current from its records (see the module doc)."""

    def __init__(self) -> None:
        self.deliveries: dict[str, QueuedDelivery] = {}
        self._heap: list[tuple[float, str]] = []  # (next_at, id); stale entries skipped on read

    def __len__(self) -> int:
        return len(self.deliveries)

    def _put(self, d: QueuedDelivery) -> None:
        self.deliveries[d.id] = d
        if d.active:
            assert d.next_at is not None
            heapq.heappush(self._heap, (d.next_at, d.id))

    def apply(self, key: bytes, value: bytes | None) -> QueuedDelivery | None:
        """Apply one record; returns the delivery as it now stands (None if unknown or forgotten)."""
        kind, delivery_id = parse_key(key)
        current = self.deliveries.get(delivery_id)
        if value is None:  # a tombstone: the state record is the delivery, the others are history
            if kind is RecordKind.STATE:
                self.deliveries.pop(delivery_id, None)
                return None
            return current
        if kind is RecordKind.PLANNED:
            if current is None:
                planned = decode_delivery(value)
                self._put(replace(planned, rev=0))
                return self.deliveries[delivery_id]
            return current
        if kind is RecordKind.STATE:
            new = decode_delivery(value)
            if current is None or new.rev > current.rev:
                self._put(new)
                return new
            return current
        at = decode_retry(value)
        if current is None or current.status == DeliveryStatus.DELIVERED.value or current.active:
            return current
        retried = replace(current, status=DeliveryStatus.PENDING.value, next_at=at, step=0, dead_reason=None)
        self._put(retried)
        return retried

    def update(self, new: QueuedDelivery) -> QueuedDelivery:
        """The state record after an attempt: ``new`` with the next ``rev`` (applied here too)."""
        current = self.deliveries.get(new.id)
        stored = replace(new, rev=(current.rev if current is not None else new.rev) + 1)
        self._put(stored)
        return stored

    def due(self, now: float, limit: int) -> list[QueuedDelivery]:
        """Active deliveries with ``next_at <= now``, oldest due first (at most ``limit``)."""
        out: list[QueuedDelivery] = []
        kept: list[tuple[float, str]] = []
        while self._heap and len(out) < limit and self._heap[0][0] <= now:
            at, delivery_id = heapq.heappop(self._heap)
            d = self.deliveries.get(delivery_id)
            if d is None or not d.active or d.next_at != at:
                continue  # superseded
            out.append(d)
            kept.append((at, delivery_id))
        for entry in kept:  # still due until their new state is applied
            heapq.heappush(self._heap, entry)
        return out

    def stats(self, now: float) -> tuple[int, float]:
        """(active deliveries, age in seconds of the oldest one due now, 0 if none)."""
        active = [d for d in self.deliveries.values() if d.active]
        overdue = [now - d.next_at for d in active if d.next_at is not None and d.next_at <= now]
        return len(active), max(overdue, default=0.0)

    def finished_before(self, cutoff: float) -> Iterator[QueuedDelivery]:
        """Delivered or dead deliveries whose last change is older than ``cutoff`` (to prune)."""
        for d in self.deliveries.values():
            if d.status not in ACTIVE and (d.last_attempt_at or d.created_at) < cutoff:
                yield d
