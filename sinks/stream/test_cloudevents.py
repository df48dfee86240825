"""Conversion rows -> CloudEvents: every change once, valid against the committed JSON Schema."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import jsonschema_rs
import orjson

from schemas.stream.models import CloudEvent, StreamType
from schemas.stream.schema_files import FILES, generated, stored
from sinks.outbound.events import Send, decide
from sinks.outbound.test_events import conv
from sinks.stream.cloudevents import plan_stream

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
VALIDATOR = jsonschema_rs.validator_for(orjson.loads(stored("conversion/v1")))


def test_committed_schema_files_are_the_generated_ones():
    for name in FILES:
        assert stored(name).decode() == generated(name), "run: python -m schemas.stream.schema_files"


def test_created_updated_reversed_once_each_and_valid():
    rows = [
        conv(1, status="pending", status_class="provisional", revenue=Decimal("0.01")),
        conv(1, status="pending", status_class="provisional", revenue=Decimal("0.01")),  # duplicate
        conv(2, status="approved", revenue=Decimal("25.50")),
        conv(3, status="approved", revenue=Decimal("25.50")),  # nothing a consumer sees changed
        conv(4, status="rejected", status_class="reversed", is_deleted=True),
    ]
    first = plan_stream(rows[:2], {}, NOW)
    rest = plan_stream(rows[2:], first.digests, NOW)
    messages = first.messages + rest.messages
    assert [m.type for m in messages] == [
        StreamType.CONVERSION_CREATED,
        StreamType.CONVERSION_UPDATED,
        StreamType.CONVERSION_REVERSED,
    ]
    events = [orjson.loads(m.body) for m in messages]
    for m, e in zip(messages, events, strict=True):
        CloudEvent.model_validate(e)
        VALIDATOR.validate(e["data"])
        assert e["id"] == m.id and e["source"] == f"/trackpipe/projects/{m.project}"
        assert e["subject"] == e["data"]["conversion_id"] and e["time"] == "2026-12-04T12:00:00Z"
    assert events[1]["data"]["value"] == 25.5 and events[1]["data"]["version"] == 2
    assert len({e["id"] for e in events}) == 3
    # the id of a change is its goal webhook's id
    webhook = decide(rows[0], None)
    assert isinstance(webhook, Send) and webhook.message.webhook_id == events[0]["id"]


def test_replayed_rows_publish_nothing_again():
    rows = [conv(1), conv(2, status="approved")]
    done = plan_stream(rows, {}, NOW)
    again = plan_stream(rows, done.digests, NOW)
    assert len(done.messages) == 2 and again.messages == [] and again.digests == {}
