"""Conversion rows -> public stream messages (CloudEvents 1.0 structured JSON, schemas.stream.models).

Every conversion is published (not only those of goals with a webhook): ``created`` when it first
counts, ``updated`` when what a consumer sees changes, ``reversed`` when it is taken back. The decision
is the goal webhook's (:func:`sinks.outbound.events.decide_rows`) over the stream's own digests, so a
duplicate or a replayed row publishes nothing and the id of a change is its webhook-id: a consumer can
match the two. ``data`` is built from the row alone; ``time`` is when the change was planned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

import orjson

from schemas.conversion_facts import ConversionFacts
from schemas.stream.models import (
    CONVERSION_DATA_SCHEMA_PATH,
    SOURCE_PREFIX,
    SPEC_VERSION,
    StreamType,
)
from sinks.outbound.events import Digest, Key, Send, WebhookEvent, announced, decide_rows, iso_utc

SCHEMA_URL_PREFIX = "/api/v1/schemas/"

TYPE_OF = {
    WebhookEvent.TRACKED: StreamType.CONVERSION_CREATED,
    WebhookEvent.UPDATED: StreamType.CONVERSION_UPDATED,
    WebhookEvent.REVERSED: StreamType.CONVERSION_REVERSED,
}


@dataclass(frozen=True, slots=True)
class StreamMessage:
    id: str
    project: str
    type: StreamType
    body: bytes  # the whole CloudEvent


@dataclass(frozen=True, slots=True)
class StreamPlan:
    digests: dict[Key, Digest]  # changed, to store with the messages
    messages: list[StreamMessage]  # in row order


def cloudevent(
    *,
    id: str,
    project: str,
    type_: StreamType,
    subject: str,
    data: Mapping[str, object],
    at: datetime,
    schema: str,
) -> bytes:
    return orjson.dumps(
        {
            "specversion": SPEC_VERSION,
            "id": id,
            "source": SOURCE_PREFIX + project,
            "type": type_.value,
            "time": iso_utc(at),
            "subject": subject,
            "datacontenttype": "application/json",
            "dataschema": SCHEMA_URL_PREFIX + schema,
            "data": data,
        }
    )


def plan_stream(rows: Iterable[ConversionFacts], digests: Mapping[Key, Digest], now: datetime) -> StreamPlan:
    """The messages ``rows`` publish, given the stream digests of their conversions (those that have one)."""
    decided, changed = decide_rows(rows, digests)
    messages: list[StreamMessage] = []
    for d in decided:
        if not isinstance(d.outcome, Send):
            continue
        row, msg = d.row, d.outcome.message
        data = {**announced(row), "version": row.version}
        type_ = TYPE_OF[msg.event]
        body = cloudevent(
            id=msg.webhook_id,
            project=row.project_id,
            type_=type_,
            subject=str(data["conversion_id"]),
            data=data,
            at=now,
            schema=CONVERSION_DATA_SCHEMA_PATH,
        )
        messages.append(StreamMessage(msg.webhook_id, row.project_id, type_, body))
    return StreamPlan(changed, messages)
