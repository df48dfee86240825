"""Rows the processors emit for the sinks."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from schemas.events import Event


class Conversion(BaseModel):
    """One conversion of one goal. ``conversion_key`` identifies it within (project, goal): the sink keeps
    one row per key (latest ``version``), so replays and duplicates never count twice."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    goal_id: str
    conversion_key: str
    account_id: str
    visitor_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    received_at: datetime
    revenue: Decimal
    currency: str
    products_count: int
    transaction_id: str
    experiment_ids: tuple[str, ...]
    variation_ids: tuple[str, ...]
    version: int


class ProcessedBatch(BaseModel):
    """What one batch of input records produced, ready for a sink's ``write_batch``."""

    model_config = ConfigDict(frozen=True)

    events: tuple[Event, ...]
    conversions: tuple[Conversion, ...]
