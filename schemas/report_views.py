"""The dashboard's further reports (issue 17): the pickers' lists (pushes, campaigns, links, experiments of
a project with their counts), the time series of a Top-5 view, and a link's click -> conversion delays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.reports import (
    DEFAULT_PERIOD,
    MAX_PERIOD,
    Currency,
    Id,
    ProjectId,
    RateBase,
    TopEventsQuery,
    _check_period,
    default_end,
)

#: What a list gives: the message hashes that were opened, the campaigns, the links, the experiments.
ListKind = Literal["pushes", "campaigns", "links", "experiments"]
#: What each list's ``count`` counts (the rate base the Top-5 uses with that filter).
LIST_COUNTS: dict[ListKind, RateBase] = {
    "pushes": "push_opens",
    "campaigns": "campaign_visitors",
    "links": "clicks",
    "experiments": "exposed_visitors",
}
Interval = Literal["hour", "day"]
#: The longest period per interval (a series has at most this many points per day x days).
MAX_SERIES_PERIOD: dict[Interval, timedelta] = {"hour": timedelta(days=31), "day": MAX_PERIOD}


def _resolve(
    from_: datetime | None, to: datetime | None, now: datetime | None, longest: timedelta
) -> tuple[datetime, datetime]:
    end = (to or default_end(now)).astimezone(UTC)
    start = (from_ or end - DEFAULT_PERIOD).astimezone(UTC)
    if end - start > longest:
        raise ValueError(f"period longer than {longest.days} days")
    return start, end


class ListQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    project: ProjectId
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)

    @model_validator(mode="after")
    def _period(self) -> ListQuery:
        _check_period(self.from_, self.to)
        return self

    def period(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        return _resolve(self.from_, self.to, now, MAX_PERIOD)


class ListRow(BaseModel):
    id: str  # push message hash, campaign, link id, experiment id
    variation: str | None = None  # experiments: one row per variation
    count: int  # push opens, campaign visitors, clicks, exposed visitors (the list's ``count_of``)
    conversions: int  # attributed to it (experiments: conversions carrying the variation)


class ListReport(BaseModel):
    project: str
    kind: ListKind
    count_of: RateBase
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    rows: list[ListRow]  # the largest count first


class SeriesQuery(BaseModel):
    """The Top-5 view's filter (at most one of campaign, link, push, experiment + variation) and a goal,
    per hour or day."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    project: ProjectId
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    interval: Interval = "day"
    goal: Id | None = None  # default: every goal
    campaign: Id | None = None
    link: Id | None = None
    push: Id | None = None
    experiment: Id | None = None
    variation: Id | None = None
    currency: Currency | None = None

    @model_validator(mode="after")
    def _filters(self) -> SeriesQuery:
        self.as_top()  # the same rules as the Top-5's (one filter, experiment with variation, period)
        return self

    def as_top(self) -> TopEventsQuery:
        names = ("project", "to", "campaign", "link", "push", "experiment", "variation", "currency")
        return TopEventsQuery(from_=self.from_, **{n: getattr(self, n) for n in names})

    @property
    def rate_base(self) -> RateBase:
        return self.as_top().rate_base

    def period(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        return _resolve(self.from_, self.to, now, MAX_SERIES_PERIOD[self.interval])


class SeriesRow(BaseModel):
    at: datetime  # the start of the hour or day (UTC); every one of the period is there, empty or not
    conversions: int
    converters: int
    revenue: float
    base_count: int  # the rate base in this hour/day (visitors seen, clicks, opens, new exposures)
    conversion_rate: float  # as the Top-5's, over this hour/day's base (0 when the base is 0)


class SeriesReport(BaseModel):
    project: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    interval: Interval
    goal: str | None
    filter: dict[str, str] = Field(default_factory=dict)
    rate_base: RateBase
    currency: str | None = None
    unconverted_conversions: int = 0
    rows: list[SeriesRow]


class DelayQuery(BaseModel):
    """``GET /api/v1/analytics/conversions/delays?link_id=&days=30``: as /api/v1/analytics/conversions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    link_id: Id
    days: int = Field(default=30, ge=1, le=MAX_PERIOD.days)
    project: ProjectId | None = None

    def period(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        end = (now or datetime.now(UTC)).astimezone(UTC) + timedelta(seconds=1)
        return end - timedelta(days=self.days), end


#: The histogram's bins: upper bounds in seconds (the last bin has none).
DELAY_BOUNDS_S = (60, 600, 3600, 6 * 3600, 86400, 7 * 86400)


class DelayRow(BaseModel):
    from_s: int  # the bin [from_s, to_s) of the click -> conversion delay
    to_s: int | None  # None: no upper bound
    conversions: int


class DelayHistogram(BaseModel):
    link_id: str
    project: str | None
    days: int
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    timed_conversions: int  # conversions with a known delay (attributed to a click of the link)
    rows: list[DelayRow]  # every bin, in order


class ViewSource(Protocol):
    """Answers the dashboard's further reports (the wiring implements it over a ClickHouse backend)."""

    async def report_list(self, kind: ListKind, query: ListQuery) -> ListReport: ...

    async def series(self, query: SeriesQuery) -> SeriesReport: ...

    async def delays(self, query: DelayQuery) -> DelayHistogram: ...
