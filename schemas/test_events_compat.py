"""Events are read tolerantly within a schema version: a field added by a newer edge is ignored by an older
reader, so edges and workers can be upgraded in any order."""

from datetime import UTC, datetime

import orjson

from schemas.envelope import decode_envelope, encode_envelope
from schemas.events import Event, EventType


def test_a_field_this_release_does_not_know_is_ignored_when_reading():
    at = datetime(2026, 12, 4, tzinfo=UTC)
    event = Event(
        event_id="e1",
        type=EventType.HIT_GOAL,
        received_at=at,
        occurred_at=at,
        account_id="a",
        project_id="p",
        visitor_id="v",
        goal_ids=("g",),
    )
    envelope = orjson.loads(encode_envelope([event]))
    envelope["events"][0]["field_of_a_later_release"] = {"x": 1}
    (read,) = decode_envelope(orjson.dumps(envelope))
    assert read == event
