"""The postback event every server-to-server conversion format becomes, with its goal's defaults."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ingest.formats.context import RequestContext
from schemas.config import Goal
from schemas.events import Event, EventType
from schemas.ids import new_event_id


def goal_postback(
    goal: Goal,
    ctx: RequestContext,
    *,
    visitor_id: str | None,
    revenue: Decimal | None,
    currency: str | None,
    transaction_id: str | None,
    source_format: str,
    **extra: Any,
) -> Event:
    """A ``postback`` event for ``goal``: its project, and its default value / currency when none is sent."""
    return Event(
        event_id=new_event_id(),
        type=EventType.POSTBACK,
        received_at=ctx.received_at,
        occurred_at=ctx.received_at,
        account_id=goal.project,
        project_id=goal.project,
        visitor_id=visitor_id or "",
        goal_ids=(goal.id,),
        revenue=revenue if revenue is not None else goal.value,
        currency=currency or goal.currency,
        transaction_id=transaction_id,
        client_ip=ctx.client_ip,
        user_agent=ctx.user_agent or None,
        source_format=source_format,
        attribution_window_days=goal.attribution_window_days,
        **extra,
    )
