"""Report requests and answers, shared by the HTTP API, the CLI and the ClickHouse queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=3660)


class TopEventsQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    project: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    limit: int = Field(default=5, ge=1, le=100)

    @model_validator(mode="after")
    def _period(self) -> TopEventsQuery:
        if self.from_ and self.to and self.from_ >= self.to:
            raise ValueError("'from' must be before 'to'")
        return self

    def period(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """Resolved half-open period [from, to): defaults to the last 30 days up to now."""
        end = (self.to or (now or datetime.now(UTC)) + timedelta(seconds=1)).astimezone(UTC)
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
    project: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    visitors: int
    rows: list[TopEventRow]


class ReportSource(Protocol):
    """Answers report queries (the wiring implements it over a ClickHouse backend)."""

    async def top_events(self, query: TopEventsQuery) -> TopEventsReport: ...
