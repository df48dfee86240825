"""Conversion statuses (FunnelFlux reference): the latest status by occurrence time decides.

- ``pending`` / ``hold`` / ``preapproved`` -> provisional: the conversion exists with revenue 0.01;
- ``rejected`` / ``reject`` / ``trash`` / ``cancelled`` -> reversed: the conversion is deleted (or never
  created) and disappears from reports;
- anything else, or no status -> normal: the real revenue. That is the amount of the latest event that
  carries one (a later ``approved`` without ``rev`` keeps the amount sent with ``pending``), else 0.

Events are ordered by (occurred_at, event_id), so out-of-order arrival resolves to the same answer.
Status values are compared case-insensitively, surrounding spaces ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from processors.messages import ConvEvent


class StatusClass(StrEnum):
    NORMAL = "normal"
    PROVISIONAL = "provisional"
    REVERSED = "reversed"


PROVISIONAL = frozenset({"pending", "hold", "preapproved"})
REVERSED = frozenset({"rejected", "reject", "trash", "cancelled"})
PROVISIONAL_REVENUE = Decimal("0.01")


def classify(status: str | None) -> StatusClass:
    s = (status or "").strip().lower()
    if s in PROVISIONAL:
        return StatusClass.PROVISIONAL
    if s in REVERSED:
        return StatusClass.REVERSED
    return StatusClass.NORMAL


@dataclass(frozen=True)
class StatusOutcome:
    status: str  # as sent by the deciding event
    status_class: StatusClass
    revenue: Decimal
    currency: str
    disable_postbacks: bool
    deciding_event_id: str

    @property
    def is_deleted(self) -> bool:
        return self.status_class is StatusClass.REVERSED


def _order(e: ConvEvent) -> tuple[datetime, str]:
    return e.occurred_at, e.event_id


def resolve(events: Iterable[ConvEvent]) -> StatusOutcome:
    ordered = list(events)
    if len(ordered) > 1:
        ordered.sort(key=_order)
    if not ordered:
        raise ValueError("a conversion needs at least one event")
    last = ordered[-1]
    cls = classify(last.status)
    currency = last.currency
    if cls is StatusClass.PROVISIONAL:
        revenue = PROVISIONAL_REVENUE
    elif cls is StatusClass.REVERSED:
        revenue = Decimal(0)
    else:
        revenue = Decimal(0)
        for e in reversed(ordered):
            if e.revenue is not None:
                revenue, currency = e.revenue, e.currency or currency
                break
    return StatusOutcome(
        status=last.status,
        status_class=cls,
        revenue=revenue,
        currency=currency,
        disable_postbacks=last.disable_postbacks,
        deciding_event_id=last.event_id,
    )
