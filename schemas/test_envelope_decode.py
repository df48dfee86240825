"""The msgspec path of ``decode_envelope`` gives exactly what pydantic's path gives, or leaves the record
to it: checked on generated events as the edge writes them and on JSON the edge never writes."""

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import EnvelopeError, _decode_fast, _Envelope, decode_envelope, encode_envelope
from schemas.events import Event, EventType, ExperimentVariation, Segment

text = st.text(max_size=8)
opt = st.none() | text
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(tzinfo=timezone(timedelta(hours=2)))
)
segments = st.builds(
    Segment,
    browser=opt,
    devices=st.lists(text, max_size=3).map(tuple),
    campaign=opt,
    returning=st.none() | st.booleans(),
    custom=st.lists(text, max_size=2).map(tuple),
)
events = st.builds(
    Event,
    event_id=text,
    type=st.sampled_from(list(EventType)),
    received_at=times,
    occurred_at=times,
    account_id=text,
    project_id=text,
    visitor_id=text,
    experiments=st.lists(
        st.builds(ExperimentVariation, experiment_id=text, variation_id=text), max_size=3
    ).map(tuple),
    goal_ids=st.lists(text, max_size=3).map(tuple),
    revenue=st.none() | st.decimals(allow_nan=False, allow_infinity=False, places=4),
    products_count=st.none() | st.integers(-(2**40), 2**40),
    segment=segments,
    click_id=opt,
    disable_postbacks=st.booleans(),
    attributes=st.dictionaries(text, text, max_size=2),
    attribution_window_days=st.none() | st.integers(0, 400),
)


def both(data: bytes) -> tuple[Any, Any]:
    """What decode_envelope answers, and what pydantic's path alone answers (events or the error type)."""
    try:
        fast: Any = decode_envelope(data)
    except EnvelopeError:
        fast = EnvelopeError
    try:
        slow: Any = _Envelope.model_validate_json(data).events
    except Exception:
        slow = EnvelopeError
    return fast, slow


def same(a: Any, b: Any) -> None:
    assert a == b
    if a is not EnvelopeError:
        assert [e.model_dump_json() for e in a] == [e.model_dump_json() for e in b]
        assert [e.model_dump() for e in a] == [e.model_dump() for e in b]


@settings(max_examples=300, deadline=None)
@given(st.lists(events, min_size=1, max_size=4))
def test_the_fast_path_reads_what_the_edge_writes_as_pydantic_does(evs):
    data = encode_envelope(evs)
    fast = _decode_fast(data)
    if any(e.revenue is not None and "E" in str(e.revenue).upper() for e in evs):
        assert fast is None  # exponents: pydantic decides
        return
    assert fast is not None
    same(fast, _Envelope.model_validate_json(data).events)
    assert fast == evs


odd_values: dict[str, list[Any]] = {
    "received_at": [1764892800, "2026-12-05", "2026-12-05 10:00:00", "2026-12-05T10:00:00", 1.5, None],
    "revenue": [12.5, 12, "1e3", " 12.5", "nan", "1_0", "-0.0", "12.", ".5", True],
    "products_count": ["3", 3.0, 3.5, True, None, 2**70],
    "disable_postbacks": [0, 1, "true", None],
    "type": ["click", "CLICK", "nope", 1],
    "goal_ids": [["a", 1], "a", None, []],
    "segment": [None, {}, {"browser": "x", "unknown": 1}, {"returning": 1}, {"devices": "x"}],
    "attributes": [{"a": 1}, None, {"a": "b"}],
    "experiments": [[{"experiment_id": "e", "variation_id": "v", "x": 1}], [{"experiment_id": "e"}], None],
    "v": ["1", 2, None],
    "visitor_id": [1, None, ""],
    "field_of_a_later_release": [{"x": 1}],
}


@pytest.mark.parametrize(("field", "value"), [(f, v) for f, vs in odd_values.items() for v in vs])
def test_json_the_edge_never_writes_reads_as_pydantic_reads_it(field, value):
    at = datetime(2026, 12, 4, tzinfo=UTC)
    event = Event(
        event_id="e1",
        type=EventType.TRANSACTION,
        received_at=at,
        occurred_at=at,
        account_id="a",
        project_id="p",
        visitor_id="v",
        goal_ids=("g",),
        revenue=Decimal("1.5"),
    )
    envelope = orjson.loads(encode_envelope([event, event]))
    envelope["events"][1][field] = value
    same(*both(json.dumps(envelope).encode()))


@pytest.mark.parametrize(
    "envelope",
    [
        {"envelope": 2, "events": []},
        {"events": []},
        {"envelope": 1, "events": {}},
        {"envelope": 1, "events": []},
    ],
)
def test_envelopes_read_as_before(envelope):
    same(*both(orjson.dumps(envelope)))
