"""The delivery log as the admin API reads it, and the ports it reads and acts through (issue 13).

* :class:`DeliveriesQuery` - the filters of ``GET /api/v1/deliveries`` (and of a bulk retry).
* :class:`DeliveryEntry` / :class:`DeliveryAttempt` - one delivery's latest state and its attempts, as
  recorded in the ClickHouse table ``delivery_attempts`` (one row per attempt).
* :class:`DeliveryLogSource` - reads the log (the wiring implements it over a ClickHouse backend).
* :class:`DeliveryControl` - acts on the deliveries' store (embedded: the state database; distributed:
  the deliveries topic): a manual retry; :class:`EndpointControl` (optional): the endpoint circuit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

Status = Literal["pending", "delivered", "failed", "dead"]
Kind = Literal["webhook", "postback"]
RETRIABLE: tuple[Status, ...] = ("failed", "dead")
MAX_LIMIT = 1000
MAX_BULK = 10_000
MAX_ATTEMPTS_SHOWN = 50  # per delivery, the latest ones
FIRST_YEAR, LAST_YEAR = 1970, 2299  # what ClickHouse's DateTime64(3) holds


def _in_range(value: datetime) -> datetime:
    if not FIRST_YEAR <= value.astimezone(UTC).year <= LAST_YEAR:
        raise ValueError(f"must be in the years {FIRST_YEAR} to {LAST_YEAR}")
    return value


Since = Annotated[AwareDatetime, AfterValidator(_in_range)]


class DeliveriesQuery(BaseModel):
    """Which deliveries: every filter is optional; ``since`` keeps those attempted at or after it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str | None = Field(None, min_length=1, max_length=200)
    goal: str | None = Field(None, min_length=1, max_length=200, description="goal id")
    link: str | None = Field(None, min_length=1, max_length=200, description="link id")
    status: Status | None = Field(None, description="the delivery's latest status")
    since: Since | None = Field(None, description="ISO 8601 with a zone: last attempt at or after")
    limit: int = Field(100, ge=1, le=MAX_LIMIT, description="deliveries, most recently attempted first")


class RetryFilter(BaseModel):
    """A bulk retry: the failed and dead deliveries matching these filters (``status`` narrows to one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str | None = Field(None, min_length=1, max_length=200)
    goal: str | None = Field(None, min_length=1, max_length=200)
    link: str | None = Field(None, min_length=1, max_length=200)
    status: Literal["failed", "dead"] | None = None
    since: Since | None = None
    limit: int = Field(1000, ge=1, le=MAX_BULK, description="at most this many deliveries")


class DeliveryAttempt(BaseModel):
    attempt: int
    at: datetime
    status: Status
    status_code: int | None = Field(description="the receiver's HTTP status; null: no answer")
    latency_ms: int
    error: str | None
    response_body: str = Field(description="the first kilobyte of the receiver's answer")
    dead_reason: str | None
    next_at: datetime | None


class DeliveryEntry(BaseModel):
    id: str
    project: str
    goal_id: str
    link_id: str
    kind: Kind
    event: str
    method: str
    url: str
    status: Status
    attempts: int
    created_at: datetime
    last_attempt_at: datetime
    next_at: datetime | None
    dead_reason: str | None
    attempts_log: list[DeliveryAttempt] = Field(description="the latest attempts, oldest first")


class DeliveriesList(BaseModel):
    deliveries: list[DeliveryEntry]


class RetryAnswer(BaseModel):
    retried: int = Field(description="deliveries brought back to pending")
    ids: list[str] = Field(description="the failed or dead deliveries that matched")


class EndpointState(BaseModel):
    """A destination that is disabled or failing (``key``: ``goal:<id>`` or ``link:<id>``)."""

    key: str
    failures: int = Field(description="failures in the current streak (at most the circuit's threshold)")
    last_failure_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: Literal["failing", "gone", "manual"] | None


class EndpointsList(BaseModel):
    endpoints: list[EndpointState]


class EndpointEnabled(BaseModel):
    key: str
    enabled: bool = True


class DeliveryLogSource(Protocol):
    """Reads the delivery log."""

    async def deliveries(self, query: DeliveriesQuery, ids: Sequence[str] = ()) -> DeliveriesList:
        """Matching deliveries, latest state first; ``ids``: only these."""
        ...

    async def retriable(self, query: RetryFilter) -> list[str]:
        """The ids of the deliveries matching ``query`` whose latest logged status is failed or dead."""
        ...


class DeliveryControl(Protocol):
    """Acts on where deliveries live (the wiring of each mode implements it)."""

    async def retry(self, ids: Sequence[str]) -> int:
        """Bring the failed or dead ones of ``ids`` back to pending, due now, with a fresh schedule
        round; the others (unknown, delivered, pending) are left alone. Returns how many changed."""
        ...


class EndpointControl(Protocol):
    """Optional for a :class:`DeliveryControl`: the endpoint circuit (without it those routes answer 501)."""

    async def endpoints(self) -> EndpointsList:
        """The endpoints disabled or with failures in their current streak."""
        ...

    async def reenable(self, key: str) -> bool:
        """Re-enable ``key`` with a clean slate; False when it was neither disabled nor failing."""
        ...
