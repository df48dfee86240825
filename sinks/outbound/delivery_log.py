"""Rows of the delivery log (ClickHouse ``delivery_attempts``, one per attempt) and their Arrow table.

Pure: :func:`attempt_row` turns what the delivery loop knows after an attempt (the delivery as stored,
its new state, the sender's result) into an :class:`AttemptRow`; :func:`attempts_table` makes the Arrow
table the backends insert (``ClickHouseBackend.insert_arrow``). The receiver's answer is kept as text,
cut to :data:`BODY_KEEP_BYTES` (the sender reads no more than that anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime

import pyarrow as pa

from sinks.outbound.schedule import Delivery
from sinks.outbound.sender import AttemptResult

TABLE = "delivery_attempts"
BODY_KEEP_BYTES = 1024
MAX_ERROR_CHARS = 500
MAX_URL_CHARS = 4096
POSTBACK_EVENT = "postback"  # the ``event`` of an S2S postback (goal webhooks: conversion.*)


@dataclass(frozen=True, slots=True)
class Planned:
    """The delivery as its store holds it (plain values: the wiring's ``DueRow`` carries them)."""

    id: str
    project: str
    goal_id: str
    link_id: str
    event: str
    method: str
    url: str
    created_at: float  # Unix seconds


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One row of ``delivery_attempts`` (field names are the column names)."""

    delivery_id: str
    project: str
    goal_id: str
    link_id: str
    kind: str
    event: str
    method: str
    url: str
    attempt: int
    at: datetime
    status: str
    status_code: int
    latency_ms: int
    error: str
    response_body: str
    dead_reason: str
    next_at: datetime | None
    created_at: datetime


def kind_of(event: str) -> str:
    return "postback" if event == POSTBACK_EVENT else "webhook"


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def kept_body(body: bytes) -> str:
    """At most :data:`BODY_KEEP_BYTES` of the answer, as text (a cut character or bad UTF-8 replaced)."""
    return body[:BODY_KEEP_BYTES].decode("utf-8", "replace")


def attempt_row(
    planned: Planned,
    new: Delivery,
    result: AttemptResult | None,
    at: datetime,
    dead_reason: str | None,
) -> AttemptRow:
    """The log row of an attempt made at ``at`` (``result`` None: decided without one, e.g. the goal is
    gone; it is logged with status code 0 and no latency)."""
    status_code = 0
    latency_ms = 0
    body = ""
    error = ""
    if result is not None:
        status_code = result.status or 0
        latency_ms = max(0, round(result.latency_s * 1000))
        body = kept_body(result.body)
        error = result.error or (result.reason.value if result.reason is not None else "")
    elif dead_reason:
        error = f"not attempted: {dead_reason}"
    return AttemptRow(
        delivery_id=planned.id,
        project=planned.project,
        goal_id=planned.goal_id,
        link_id=planned.link_id,
        kind=kind_of(planned.event),
        event=planned.event,
        method=planned.method,
        url=planned.url[:MAX_URL_CHARS],
        attempt=new.attempts,
        at=at.astimezone(UTC),
        status=new.status.value,
        status_code=min(max(status_code, 0), 65535),
        latency_ms=min(latency_ms, 2**32 - 1),
        error=error[:MAX_ERROR_CHARS],
        response_body=body,
        dead_reason=dead_reason or "",
        next_at=None if new.due_at is None else new.due_at.astimezone(UTC),
        created_at=_utc(planned.created_at),
    )


_TS = pa.timestamp("ms", tz="UTC")
SCHEMA = pa.schema(
    [
        ("delivery_id", pa.string()),
        ("project", pa.string()),
        ("goal_id", pa.string()),
        ("link_id", pa.string()),
        ("kind", pa.string()),
        ("event", pa.string()),
        ("method", pa.string()),
        ("url", pa.string()),
        ("attempt", pa.uint32()),
        ("at", _TS),
        ("status", pa.string()),
        ("status_code", pa.uint16()),
        ("latency_ms", pa.uint32()),
        ("error", pa.string()),
        ("response_body", pa.string()),
        ("dead_reason", pa.string()),
        ("next_at", _TS),
        ("created_at", _TS),
    ]
)
assert SCHEMA.names == [f.name for f in fields(AttemptRow)]


def attempts_table(rows: Sequence[AttemptRow]) -> pa.Table:
    """The rows as an Arrow table with the columns of ``delivery_attempts``."""
    columns = list(zip(*(astuple(r) for r in rows), strict=True)) if rows else [()] * len(SCHEMA)
    return pa.table([pa.array(list(c), type=f.type) for c, f in zip(columns, SCHEMA, strict=True)], SCHEMA)
