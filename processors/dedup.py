"""What counts as the same conversion, and the bounded per-conversion state that makes counting exact.

Conversion key within a project (README, "What counts"):

- an event with a transaction / order id (``transaction``, ``postback``) -> ``tx:<id>``: one conversion
  per id, through whichever endpoint it arrives; its status updates change that one conversion;
- a postback without one -> ``click:<click id>`` (one per click), ``vp:<visitor>:<link>`` (vid + page),
  else ``ev:<event id>`` (each counts);
- a goal hit -> ``visitor:<visitor id>`` (once per visitor and goal);
- a transaction without id, a custom event -> ``ev:<event id>``.

``Ledger`` is the state of one (project, conversion key): every distinct event that carried it, each
with the best attribution seen. Merging is idempotent and order-free (a replayed or duplicated event
changes nothing; a better-informed copy replaces a worse one), so any interleaving and duplication of
the same events gives the same ledger. A ledger expires ``dedup_window`` after its newest event.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from processors.codec import decoder, dumps
from processors.messages import Attributed
from processors.outcome import Drop, DropReason, Merged, Ok, Outcome
from schemas.events import Event, EventType

#: Event types that can make conversions.
CONVERSION_EVENT_TYPES = frozenset(
    {EventType.HIT_GOAL, EventType.TRANSACTION, EventType.POSTBACK, EventType.CUSTOM_EVENT}
)


def conversion_key(event: Event) -> str | None:
    """The key identifying the conversion ``event`` makes within its project; None if it makes none."""
    if event.type not in CONVERSION_EVENT_TYPES or not event.goal_ids:
        return None
    if event.type in (EventType.TRANSACTION, EventType.POSTBACK) and event.transaction_id:
        return f"tx:{event.transaction_id}"
    if event.type is EventType.POSTBACK:
        if event.click_id:
            return f"click:{event.click_id}"
        if event.visitor_id and event.link_id:
            return f"vp:{event.visitor_id}:{event.link_id}"
        return f"ev:{event.event_id}"
    if event.type is EventType.HIT_GOAL:
        return f"visitor:{event.visitor_id}"
    return f"ev:{event.event_id}"


class Ledger(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """All events of one conversion key, by event id (a msgspec Struct: see processors.codec)."""

    events: dict[str, Attributed] = {}

    def merge(self, msg: Attributed) -> Outcome[Attributed]:
        """Add or improve one event. Merged = a further event of the conversion (a duplicate or a status
        update), Drop = it changed nothing (replay, or no better information)."""
        eid = msg.conv.event_id
        held = self.events.get(eid)
        if held is None:
            duplicate = bool(self.events)
            self.events[eid] = msg
            return Merged(msg) if duplicate else Ok(msg)
        if msg.info > held.info:
            self.events[eid] = msg
            return Ok(msg)
        return Drop(DropReason.REPLAY, "event already merged")

    @property
    def version(self) -> int:
        """Grows with every merge that changed something: the sink keeps the highest."""
        return (1 << 62) + sum(1 + m.info for m in self.events.values())

    def newest(self) -> datetime | None:
        return max((m.conv.occurred_at for m in self.events.values()), default=None)

    def expires_at(self, window: timedelta) -> datetime | None:
        newest = self.newest()
        return None if newest is None else newest + window


_LEDGER = decoder(Ledger)


def decode_ledger(raw: bytes) -> Ledger:
    return _LEDGER.decode(raw)


def encode_ledger(ledger: Ledger) -> bytes:
    return dumps(ledger)
