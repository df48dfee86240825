"""Turn an accepted event into conversion rows, one per goal it names.

Keys (README, "What counts"): a transaction with an id -> ``tx:<id>`` (counts once however often it
arrives); a transaction without an id -> ``ev:<event id>``; a goal hit -> ``visitor:<visitor id>``
(a goal converts once per visitor, as Convert counts goal conversions).
"""

from __future__ import annotations

from decimal import Decimal

from schemas.events import Event, EventType
from schemas.ids import event_id_millis
from schemas.rows import Conversion

_ZERO = Decimal(0)


def conversion_key(event: Event) -> str:
    if event.type is EventType.TRANSACTION:
        return f"tx:{event.transaction_id}" if event.transaction_id else f"ev:{event.event_id}"
    return f"visitor:{event.visitor_id}"


def conversions_from_event(event: Event) -> list[Conversion]:
    if event.type not in (EventType.HIT_GOAL, EventType.TRANSACTION) or not event.goal_ids:
        return []
    key = conversion_key(event)
    revenue = event.revenue if event.type is EventType.TRANSACTION and event.revenue is not None else _ZERO
    exps = tuple(x.experiment_id for x in event.experiments)
    vars_ = tuple(x.variation_id for x in event.experiments)
    version = event_id_millis(event.event_id)
    return [
        Conversion(
            project_id=event.project_id,
            goal_id=goal,
            conversion_key=key,
            account_id=event.account_id,
            visitor_id=event.visitor_id,
            event_id=event.event_id,
            event_type=event.type.value,
            occurred_at=event.occurred_at,
            received_at=event.received_at,
            revenue=revenue,
            currency=event.currency or "",
            products_count=event.products_count or 0,
            transaction_id=event.transaction_id or "",
            experiment_ids=exps,
            variation_ids=vars_,
            version=version,
        )
        for goal in dict.fromkeys(event.goal_ids)
    ]
