"""Rows the processors emit for the sinks (and for the output topics).

Every row kind is idempotent in ClickHouse: it has a key and a ``version``; the table keeps the row with
the highest version per key (ReplacingMergeTree, read with FINAL), so replays, duplicates and status
updates never count twice. ``is_deleted`` marks a row whose key no longer counts (a reversed
conversion, a session merged into another).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, ClassVar, Generic, TypeVar, overload

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


# --- Rows as columns (issue 16 item 4, decision 155) ---
# The visitor stage makes its session and exposure rows from values it already holds; it appends them to
# one list per column instead of building a row object each, so the sink wraps the lists in Arrow arrays
# without reading rows back field by field. Readers of rows (the Faust port's sessions topic, tests) get
# the row objects, built once on first access.

R = TypeVar("R", bound=BaseModel)


class ColumnRows(Sequence[R], Generic[R]):
    """Rows of one table held as columns: ``columns[field]`` is the list of that field's values, in row
    order. A read-only sequence of the row objects, built on first row access (``len`` builds nothing).
    ``key`` names the fields that identify a row: :meth:`latest` keeps the last version per key."""

    fields: ClassVar[tuple[str, ...]]
    key: ClassVar[tuple[str, ...]]
    __slots__ = ("_rows", "columns")

    def __init__(self, columns: dict[str, list[Any]] | None = None) -> None:
        self.columns: dict[str, list[Any]] = columns or {f: [] for f in self.fields}
        self._rows: tuple[R, ...] | None = None

    def __len__(self) -> int:
        return len(self.columns[self.fields[0]])

    @overload
    def __getitem__(self, i: int) -> R: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[R]: ...
    def __getitem__(self, i: int | slice) -> R | Sequence[R]:
        return self.rows()[i]

    def __iter__(self) -> Iterator[R]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ColumnRows | tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} rows)"

    def rows(self) -> tuple[R, ...]:
        if self._rows is None:
            self._rows = tuple(map(self._row, *(self.columns[f] for f in self.fields)))
        return self._rows

    def _row(self, *values: Any) -> R:
        raise NotImplementedError

    def extend(self, other: ColumnRows[R]) -> None:
        for f in self.fields:
            self.columns[f].extend(other.columns[f])
        self._rows = None

    def latest(self) -> ColumnRows[R]:
        """The rows with the highest version per key (ties: the later row), in the order each key first
        appeared: what keeping one row per key in a dict does."""
        cols = self.columns
        keys = list(zip(*(cols[f] for f in self.key), strict=True))
        if len(set(keys)) == len(keys):
            return self
        versions = cols["version"]
        best: dict[tuple[Any, ...], int] = {}
        for i, k in enumerate(keys):
            j = best.get(k)
            if j is None or versions[i] >= versions[j]:
                best[k] = i
        take = itemgetter(*best.values())
        if len(best) == 1:
            return type(self)({f: [take(v)] for f, v in cols.items()})
        return type(self)({f: list(take(v)) for f, v in cols.items()})


_set = object.__setattr__


def _model(cls: type[R], values: dict[str, Any]) -> R:
    """A frozen row holding ``values`` (every field, of its type) without validation, as the processors
    build their rows (``processors.codec.construct``)."""
    obj = cls.__new__(cls)
    _set(obj, "__dict__", values)
    _set(obj, "__pydantic_fields_set__", _FIELDS_SET[cls])
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _ms_datetime(t_ms: int) -> datetime:
    return datetime.fromtimestamp(t_ms / 1000, tz=UTC)


class SessionColumns(ColumnRows["SessionRow"]):
    """Session rows as columns; ``started_at`` / ``ended_at`` hold epoch milliseconds (the rows get
    datetimes)."""

    fields = (
        "project_id",
        "account_id",
        "visitor_id",
        "session_id",
        "started_at",
        "ended_at",
        "events",
        "is_deleted",
        "version",
    )
    key = ("project_id", "visitor_id", "session_id")
    __slots__ = ()

    def add(
        self,
        project_id: str,
        account_id: str,
        visitor_id: str,
        session_id: str,
        started_ms: int,
        ended_ms: int,
        events: int,
        is_deleted: bool,
        version: int,
    ) -> None:
        c = self.columns
        c["project_id"].append(project_id)
        c["account_id"].append(account_id)
        c["visitor_id"].append(visitor_id)
        c["session_id"].append(session_id)
        c["started_at"].append(started_ms)
        c["ended_at"].append(ended_ms)
        c["events"].append(events)
        c["is_deleted"].append(is_deleted)
        c["version"].append(version)
        self._rows = None

    def _row(self, *values: Any) -> SessionRow:
        row = dict(zip(self.fields, values, strict=True))
        row["started_at"] = _ms_datetime(row["started_at"])
        row["ended_at"] = _ms_datetime(row["ended_at"])
        return _model(SessionRow, row)


class ExposureColumns(ColumnRows["ExposureRow"]):
    """Variation exposure rows as columns (``first_seen_at`` holds the event's datetime, as the row)."""

    fields = (
        "project_id",
        "account_id",
        "experiment_id",
        "variation_id",
        "visitor_id",
        "first_seen_at",
        "version",
    )
    key = ("project_id", "experiment_id", "variation_id", "visitor_id")
    __slots__ = ()

    def add(
        self,
        project_id: str,
        account_id: str,
        experiment_id: str,
        variation_id: str,
        visitor_id: str,
        first_seen_at: datetime,
        version: int,
    ) -> None:
        c = self.columns
        c["project_id"].append(project_id)
        c["account_id"].append(account_id)
        c["experiment_id"].append(experiment_id)
        c["variation_id"].append(variation_id)
        c["visitor_id"].append(visitor_id)
        c["first_seen_at"].append(first_seen_at)
        c["version"].append(version)
        self._rows = None

    def _row(self, *values: Any) -> ExposureRow:
        return _model(ExposureRow, dict(zip(self.fields, values, strict=True)))


_FIELDS_SET: dict[type[BaseModel], set[str]] = {
    SessionRow: set(SessionRow.model_fields),
    ExposureRow: set(ExposureRow.model_fields),
}
assert SessionColumns.fields == tuple(SessionRow.model_fields)
assert ExposureColumns.fields == tuple(ExposureRow.model_fields)


class ProcessedBatch(BaseModel):
    """What one batch of input records produced, ready for a sink's ``write_batch``."""

    model_config = ConfigDict(frozen=True)

    events: tuple[Event, ...] = ()
    conversions: tuple[Conversion, ...] = ()
    session_ids: tuple[str, ...] = ()  # parallel to ``events`` when set: each event's session
    sessions: Sequence[SessionRow] = ()  # a SessionColumns from the processors
    exposures: Sequence[ExposureRow] = ()  # an ExposureColumns from the processors
    goal_days: tuple[GoalDayCounter, ...] = ()  # counters (decision 100): written after the rows
    goal_pairs: tuple[GoalPairCounter, ...] = ()
    visit_pairs: tuple[VisitPairCounter, ...] = ()
    counters_ready: tuple[CountersReady, ...] = ()  # marked after the counters are written

    @property
    def is_empty(self) -> bool:
        return not (self.events or self.conversions or self.sessions or self.exposures) and not (
            self.goal_days or self.goal_pairs or self.visit_pairs or self.counters_ready
        )
