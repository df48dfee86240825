"""Rows the processors emit for the sinks (and for the output topics).

Every row kind is idempotent in ClickHouse: it has a key and a ``version``; the table keeps the row with
the highest version per key (ReplacingMergeTree, read with FINAL), so replays, duplicates and status
updates never count twice. ``is_deleted`` marks a row whose key no longer counts (a reversed
conversion, a session merged into another).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from schemas.events import Event


class Credit(BaseModel):
    """One touch's share of a conversion under one attribution model."""

    model_config = ConfigDict(frozen=True)

    model: str  # last_click, first_click, linear, time_decay, position_based, backward
    touch_id: str  # click id or push:<event id>; "" = unattributed (direct)
    kind: str  # click, push, "" (unattributed)
    link_id: str
    campaign: str
    push_hash: str
    credit: Decimal  # share of the conversion (10^-9 units; a model's shares sum to 1)
    revenue: Decimal  # share of the revenue (10^-4 units; a model's shares sum to the revenue)


class Conversion(BaseModel):
    """One conversion of one goal. ``conversion_key`` identifies it within (project, goal): the sink keeps
    one row per key (latest ``version``), so replays and duplicates never count twice."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    goal_id: str
    conversion_key: str
    account_id: str
    visitor_id: str
    event_id: str  # the earliest event of the conversion
    event_type: str
    occurred_at: datetime  # conversion time: the earliest event's occurrence
    received_at: datetime
    revenue: Decimal
    currency: str
    products_count: int
    transaction_id: str
    experiment_ids: tuple[str, ...]
    variation_ids: tuple[str, ...]
    version: int
    # statuses
    status: str = ""  # as sent by the deciding (latest) event
    status_class: str = "normal"  # normal, provisional, reversed
    is_deleted: bool = False  # reversed: not counted anywhere
    disable_postbacks: bool = False
    events_merged: int = 1  # distinct events that carried this conversion
    # attribution
    attribution_method: str = ""  # click, visitor_link, visitor, push, fingerprint, none
    attribution_model: str = "last_click"  # the project's reporting model
    attributed_touch_id: str = ""
    attributed_click_id: str = ""
    attributed_external_click_id: str = ""  # the traffic source's click id on that click (issue 13)
    attributed_link_id: str = ""
    attributed_campaign: str = ""
    attributed_push_hash: str = ""
    attributed_at: datetime | None = None
    time_to_convert_ms: int | None = None
    attribution_window_s: int = 30 * 86400
    credits: tuple[Credit, ...] = ()


class SessionRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    project_id: str
    account_id: str
    visitor_id: str
    session_id: str
    started_at: datetime
    ended_at: datetime
    events: int
    is_deleted: bool
    version: int


class ExposureRow(BaseModel):
    """A visitor saw a variation (first time ``first_seen_at``)."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    account_id: str
    experiment_id: str
    variation_id: str
    visitor_id: str
    first_seen_at: datetime
    version: int


# --- Counters kept by the writers for the fast exact Top-5 (issue 16 item 5; processors/counters.py) ---
# Absolute values of one writer (a stage partition) after the input offset ``version``: ClickHouse keeps
# the highest version per (counter, writer), the report sums the writers (docs/decisions.md 100).


@dataclass(frozen=True, slots=True)
class GoalDayCounter:
    """Live conversions of a goal on a UTC day in one currency, their revenue, how many have one."""

    writer: str
    project_id: str
    goal_id: str
    day: date
    currency: str
    conversions: int
    revenue: Decimal
    with_revenue: int
    version: int


@dataclass(frozen=True, slots=True)
class GoalPairCounter:
    """Converters of a goal whose live conversion days include ``day`` with ``prev_day`` the one before."""

    writer: str
    project_id: str
    goal_id: str
    day: date
    prev_day: date
    converters: int
    version: int


@dataclass(frozen=True, slots=True)
class VisitPairCounter:
    """Visitors (of a reach kind/key) seen on ``day`` whose previous visit day is ``prev_day``."""

    writer: str
    project_id: str
    kind: str
    key: str
    day: date
    prev_day: date
    visitors: int
    version: int


@dataclass(frozen=True, slots=True)
class CountersReady:
    """A writer says its counters hold all of a project's data (``ready``), or no longer do. The counters
    answer periods of at most ``max_days`` whole days (0: any) that start within the last
    ``retention_days`` (0: any): beyond them they are not exact (docs/decisions.md 151)."""

    project_id: str
    ready: bool
    max_days: int
    retention_days: int


class ProcessedBatch(BaseModel):
    """What one batch of input records produced, ready for a sink's ``write_batch``."""

    model_config = ConfigDict(frozen=True)

    events: tuple[Event, ...] = ()
    conversions: tuple[Conversion, ...] = ()
    session_ids: tuple[str, ...] = ()  # parallel to ``events`` when set: each event's session
    sessions: tuple[SessionRow, ...] = ()
    exposures: tuple[ExposureRow, ...] = ()
    goal_days: tuple[GoalDayCounter, ...] = ()  # counters (decision 100): written after the rows
    goal_pairs: tuple[GoalPairCounter, ...] = ()
    visit_pairs: tuple[VisitPairCounter, ...] = ()
    counters_ready: tuple[CountersReady, ...] = ()  # marked after the counters are written

    @property
    def is_empty(self) -> bool:
        return not (self.events or self.conversions or self.sessions or self.exposures) and not (
            self.goal_days or self.goal_pairs or self.visit_pairs or self.counters_ready
        )
