"""Envelope records: the unit on every Kafka topic and in the embedded log.

Faust's cost is per Kafka record, so a record carries many canonical events. Format (version 1),
orjson-encoded JSON object::

    {"envelope": 1, "schema": <event schema version>, "events": [<Event as JSON>, ...]}

Readers reject an unknown envelope version (it goes to the dead-letter path with the raw bytes)
rather than guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from schemas.events import SCHEMA_VERSION, Event

ENVELOPE_VERSION = 1

_events_adapter = TypeAdapter(list[Event])


class _Envelope(BaseModel):
    """Fast path of :func:`decode_envelope`: a well-formed current envelope, validated from JSON bytes in
    one pass (no intermediate Python objects; ~18% less time per event than parse-then-validate)."""

    model_config = ConfigDict(extra="ignore")

    envelope: Literal[1]  # == ENVELOPE_VERSION
    events: list[Event]


class EnvelopeError(ValueError):
    """A record that is not a readable envelope. Never retriable: the bytes are wrong."""

    retriable = False


def encode_envelope(events: Iterable[Event]) -> bytes:
    body = b",".join(e.__pydantic_serializer__.to_json(e) for e in events)
    head = b'{"envelope":%d,"schema":%d,"events":[' % (ENVELOPE_VERSION, SCHEMA_VERSION)
    return head + body + b"]}"


def decode_envelope(data: bytes) -> Sequence[Event]:
    try:
        return _Envelope.model_validate_json(data).events
    except ValidationError:
        pass  # not a well-formed current envelope: the checks below say exactly what is wrong
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"record is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("envelope") != ENVELOPE_VERSION:
        got = obj.get("envelope") if isinstance(obj, dict) else type(obj).__name__
        raise EnvelopeError(f"unsupported envelope version {got!r}, expected {ENVELOPE_VERSION}")
    try:
        return _events_adapter.validate_python(obj.get("events"))
    except ValidationError as exc:
        raise EnvelopeError(f"envelope events do not match the event schema: {exc}") from exc
