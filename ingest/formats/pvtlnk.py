"""PVTLNK conversions (reference 001): ``{value, currency, order_id, click_id?}`` for the goal whose
postback token the request carries (in the path, or as ``postback_token`` in the body).

``order_id`` becomes the transaction id (conversions dedup by it); ``value`` defaults to the goal's
value and ``currency`` to the goal's currency. ``click_id`` may be one of our click ids (then the link
is known) or any id the integrator kept. Without it the event still carries client IP and user agent,
and the visitor cookie when the request comes from the visitor's browser (the pixel): the processors
attribute it automatically.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingest.formats import fields
from ingest.formats.clicks import link_of_click
from ingest.formats.context import RequestContext
from ingest.formats.goal_events import goal_postback
from schemas.config import ConfigState, Goal
from schemas.events import Event

FIELDS = ("value", "currency", "order_id", "click_id")


def parse_conversion(
    data: Mapping[str, Any],
    goal: Goal,
    ctx: RequestContext,
    state: ConfigState,
    *,
    visitor_id: str | None,
    source_format: str,
) -> Event:
    value = fields.amount(data.get("value"), "value")
    currency = fields.currency(data.get("currency"))
    order_id = fields.text(data.get("order_id"), "order_id")
    click_id = fields.text(data.get("click_id"), "click_id")
    link_id = None
    if click_id:
        candidate = link_of_click(click_id)
        link = state.link(candidate) if candidate else None
        if link is not None and link.project == goal.project:
            link_id = link.id
    return goal_postback(
        goal,
        ctx,
        visitor_id=visitor_id,
        revenue=value,
        currency=currency,
        transaction_id=order_id,
        source_format=source_format,
        click_id=click_id,
        link_id=link_id,
    )
