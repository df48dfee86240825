"""The canonical event: every accepted input, whatever its wire format, becomes one of these.

Versioned by ``SCHEMA_VERSION``; serialized with orjson inside envelopes (see ``schemas.envelope``).
A change that removes or retypes a field bumps the version; adding an optional field does not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 1

ShortStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class EventType(StrEnum):
    VIEW_EXP = "view_exp"
    HIT_GOAL = "hit_goal"
    TRANSACTION = "transaction"
    CLICK = "click"
    POSTBACK = "postback"
    PUSH_OPEN = "push_open"
    CUSTOM_EVENT = "custom_event"


#: Event types that can produce conversions.
CONVERSION_TYPES = frozenset({EventType.HIT_GOAL, EventType.TRANSACTION, EventType.POSTBACK})


class Segment(BaseModel):
    """Visitor segment fields as Convert sends them in ``seg``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    browser: str | None = None
    devices: tuple[str, ...] = ()
    source: str | None = None
    campaign: str | None = None
    returning: bool | None = None  # Convert's ``new``: 0 = new visitor in this session, 1 = returning
    country: str | None = None
    custom: tuple[str, ...] = ()


class ExperimentVariation(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment_id: str
    variation_id: str


class Event(BaseModel):
    """One tracking event, canonical form.

    Within a schema version, changes are additive only (a new optional field with a default), and
    readers ignore fields they do not know: a worker still on the previous release reads the events of a
    newer edge (rolling upgrades in any order). A change that is not additive bumps ``SCHEMA_VERSION``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = SCHEMA_VERSION
    event_id: str
    type: EventType
    received_at: datetime
    occurred_at: datetime
    account_id: str
    project_id: str
    visitor_id: str
    experiments: tuple[ExperimentVariation, ...] = ()
    goal_ids: tuple[str, ...] = ()
    revenue: Decimal | None = None
    currency: str | None = None
    products_count: int | None = None
    transaction_id: str | None = None
    segment: Segment = Field(default_factory=Segment)
    client_ip: str | None = None
    user_agent: str | None = None
    source_format: str = "unknown"  # which wire format it arrived in (convert_json, convert_query, ...)
    # Clicks, postbacks and push platforms (added in schema 1 as optional fields):
    click_id: str | None = None  # our click id (FunnelFlux "hit id"), set on clicks, carried by postbacks
    link_id: str | None = None  # tracking link (FunnelFlux page id) the click or postback refers to
    # the traffic source's own click id, taken on a click from the link's external_click_param (issue 13)
    external_click_id: str | None = None
    status: str | None = None  # postback status exactly as sent (pending, rejected, approved, ...)
    disable_postbacks: bool = False  # do not forward this conversion to the traffic source
    push_hash: str | None = None  # Pushwoosh msgHash of the push that was opened / led to the event
    app_id: str | None = None  # Pushwoosh application code
    device_id: str | None = None  # Pushwoosh hwid
    user_id: str | None = None  # the integrator's own user id, when sent
    event_name: str | None = None  # custom event name (Pushwoosh postEvent "event")
    attributes: dict[str, str] = Field(default_factory=dict)  # UTM parameters and custom attributes
    # The goal's attribution window, carried by conversions of configured goals (postbacks, PVTLNK) so
    # the processors need no configuration lookup; None = the processors' default.
    attribution_window_days: int | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)
