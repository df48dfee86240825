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
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ingest.formats import fields
from ingest.formats.clicks import link_of_click
from ingest.formats.context import RequestContext
from ingest.formats.goal_events import goal_postback
from schemas.config import ConfigState, Goal
from schemas.events import Event


class ConversionFields(BaseModel):
    """What a conversion may carry (JSON body, or the pixel's query). It describes the fields
    :func:`parse_conversion` reads (``FIELDS``); the checks are those of :mod:`ingest.formats.fields`."""

    model_config = ConfigDict(extra="ignore")

    value: Decimal | None = Field(None, ge=0, le=Decimal("1e12"), description="default: the goal's value")
    currency: str | None = Field(None, description="active ISO 4217 code, any case; default: the goal's")
    order_id: str | int | None = Field(None, description="transaction id: conversions dedup by it")
    click_id: str | int | None = Field(None, description="the click that led here (one of ours or any id)")


class TokenConversionFields(ConversionFields):
    """The server-side API: the goal's postback token in the body."""

    postback_token: str = Field(description="the goal's postback token")


FIELDS = tuple(ConversionFields.model_fields)


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
