"""Report requests and answers, shared by the HTTP API, the CLI and the ClickHouse queries."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=3660)
# Report times must be storable as ClickHouse DateTime64(3): stay well inside its range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
ProjectId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
#: ISO 4217-like code; reports convert revenue into it (default: the project's, see docs/decisions.md)
Currency = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{3}$")]
#: What a Top-5 report's conversion rate divides by (see docs/decisions.md).
RateBase = Literal["visitors", "campaign_visitors", "clicks", "push_opens", "exposed_visitors"]


def default_end(now: datetime | None = None) -> datetime:
    """A report's default end: the start of tomorrow (UTC), so default periods are whole days, today
    included (the aggregates answer whole days; docs/decisions.md 54)."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return datetime.combine(today + timedelta(days=1), time(), UTC)


def _check_period(from_: datetime | None, to: datetime | None) -> None:
    for name, value in (("from", from_), ("to", to)):
        if value is not None and not EARLIEST <= value < LATEST:
            raise ValueError(f"'{name}' must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    if from_ and to and from_ >= to:
        raise ValueError("'from' must be before 'to'")


class TopEventsQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    project: ProjectId
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    limit: int = Field(default=5, ge=1, le=100)
    # at most one filter: a campaign, a link, a push message, or an experiment variation
    campaign: Id | None = None
    link: Id | None = None
    push: Id | None = None
    experiment: Id | None = None
    variation: Id | None = None
    currency: Currency | None = None  # convert revenue into this (default: the project's currency)

    @model_validator(mode="after")
    def _period(self) -> TopEventsQuery:
        _check_period(self.from_, self.to)
        if (self.experiment is None) != (self.variation is None):
            raise ValueError("'experiment' and 'variation' go together")
        given = [n for n in ("campaign", "link", "push", "experiment") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(
                f"at most one filter of campaign, link, push, experiment (got {', '.join(given)})"
            )
        return self

    @property
    def rate_base(self) -> RateBase:
        if self.campaign is not None:
            return "campaign_visitors"
        if self.link is not None:
            return "clicks"
        if self.push is not None:
            return "push_opens"
        if self.experiment is not None:
            return "exposed_visitors"
        return "visitors"

    def period(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """Resolved half-open period [from, to): by default the 30 whole UTC days ending with today."""
        end = (self.to or default_end(now)).astimezone(UTC)
        start = (self.from_ or end - DEFAULT_PERIOD).astimezone(UTC)
        if end - start > MAX_PERIOD:
            raise ValueError(f"period longer than {MAX_PERIOD.days} days")
        return start, end


class TopEventRow(BaseModel):
    goal_id: str
    conversions: int
    converters: int
    conversion_rate: float
    revenue: float


class TopEventsReport(BaseModel):
    """``conversion_rate`` = converters / ``rate_base_count`` when the base counts visitors (the project's,
    the campaign's, those who saw the variation), conversions / ``rate_base_count`` when it counts clicks
    on the link or opens of the push message."""

    project: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    filter: dict[str, str] = Field(default_factory=dict)
    visitors: int  # distinct visitors behind the rate base (for clicks/push opens: who clicked/opened)
    rate_base: RateBase = "visitors"
    rate_base_count: int = 0
    # revenue: converted into `currency` with the rate of each conversion's day (sinks/fx.py); None:
    # no currency chosen nor set for the project, revenue is the sum of the amounts as sent
    currency: str | None = None
    revenue_raw: dict[str, float] = Field(default_factory=dict)  # the rows' amounts as sent, per currency
    unconverted_conversions: int = 0  # conversions of the rows left out of revenue: no rate for their day
    rows: list[TopEventRow]


class ConversionAnalyticsQuery(BaseModel):
    """``GET /api/v1/analytics/conversions?link_id=&days=30`` (PVTLNK): the last ``days`` days up to now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    link_id: Id
    days: int = Field(default=30, ge=1, le=MAX_PERIOD.days)
    project: ProjectId | None = None
    currency: Currency | None = None  # default: the project's currency (when a project is given)

    def period(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        end = (now or datetime.now(UTC)).astimezone(UTC) + timedelta(seconds=1)
        return end - timedelta(days=self.days), end


class GoalConversionsRow(BaseModel):
    goal_id: str
    conversions: int
    total_value: float
    average_value: float


class ConversionAnalytics(BaseModel):
    """PVTLNK metrics of one link: conversion rate = conversions / clicks, average value = total value /
    conversions, time to convert = from the attributed click to the conversion (mean and median, seconds)."""

    link_id: str
    project: str | None
    days: int
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    clicks: int
    conversions: int
    conversion_rate: float
    total_value: float
    average_value: float
    time_to_convert_mean_s: float | None
    time_to_convert_median_s: float | None
    # revenue: converted into `currency` with the rate of each conversion's day (sinks/fx.py); None:
    # no currency chosen nor set for the project, revenue is the sum of the amounts as sent
    currency: str | None = None
    revenue_raw: dict[str, float] = Field(default_factory=dict)  # the rows' amounts as sent, per currency
    unconverted_conversions: int = 0  # conversions of the rows left out of revenue: no rate for their day
    rows: list[GoalConversionsRow]  # per goal


class ExperimentReportQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    experiment: Id
    project: ProjectId
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    goal: Id | None = None  # converting = converted on this goal (default: on any goal)
    baseline: Id | None = None  # default: the variation with the smallest id
    currency: Currency | None = None  # default: the project's currency

    @model_validator(mode="after")
    def _period(self) -> ExperimentReportQuery:
        _check_period(self.from_, self.to)
        return self

    def period(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        end = (self.to or default_end(now)).astimezone(UTC)
        start = (self.from_ or end - DEFAULT_PERIOD).astimezone(UTC)
        if end - start > MAX_PERIOD:
            raise ValueError(f"period longer than {MAX_PERIOD.days} days")
        return start, end


class VariationRow(BaseModel):
    variation_id: str
    exposures: int  # distinct visitors who saw it in the period
    conversions: int  # conversions (not reversed) of visitors who saw it, carrying the variation
    converters: int  # distinct converting visitors among them
    conversion_rate: float  # converters / exposures
    revenue: float
    is_baseline: bool
    # rate minus the baseline's rate, with its 95% confidence interval (two-proportion normal
    # approximation, unpooled standard error); None for the baseline itself or without exposures
    difference: float | None
    ci95_low: float | None
    ci95_high: float | None


class ExperimentReport(BaseModel):
    project: str
    experiment: str
    goal: str | None
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    baseline: str | None
    # revenue: converted into `currency` with the rate of each conversion's day (sinks/fx.py); None:
    # no currency chosen nor set for the project, revenue is the sum of the amounts as sent
    currency: str | None = None
    revenue_raw: dict[str, float] = Field(default_factory=dict)  # the rows' amounts as sent, per currency
    unconverted_conversions: int = 0  # conversions of the rows left out of revenue: no rate for their day
    rows: list[VariationRow]


class ProjectsQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(default=100, ge=1, le=1000)


class ProjectRow(BaseModel):
    project: str
    last_event_at: datetime


class ProjectsReport(BaseModel):
    """Project ids that have events, the most recently active first (the dashboard's project picker)."""

    rows: list[ProjectRow]


class ReportSource(Protocol):
    """Answers report queries (the wiring implements it over a ClickHouse backend)."""

    async def top_events(self, query: TopEventsQuery) -> TopEventsReport: ...

    async def projects(self, query: ProjectsQuery, only: Collection[str] | None = None) -> ProjectsReport:
        """``only``: among these projects alone (a read key's), else every project."""

    async def conversion_analytics(self, query: ConversionAnalyticsQuery) -> ConversionAnalytics: ...

    async def experiment_report(self, query: ExperimentReportQuery) -> ExperimentReport: ...
