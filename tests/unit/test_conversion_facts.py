"""The worker's planner reads conversion rows as :class:`ConversionFactsRecord` (msgspec, decision 161):
whatever outbound planning makes of them must be what it makes of the rows themselves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.runtime.faust.topology import conversion_items, decode_conversion_facts, encode_rows
from schemas.conversion_facts import ConversionFacts
from schemas.envelope import EnvelopeError
from schemas.rows import Conversion, Credit
from sinks.outbound.events import WebhookEvent, announced, decide, webhook_body
from sinks.outbound.templates import macro_values

FACTS = [name for name, v in vars(ConversionFacts).items() if isinstance(v, property)]
T0 = datetime(2026, 1, 21, 12, tzinfo=UTC)

text = st.text(max_size=12)
times = st.integers(0, 400 * 86_400_000_000).map(lambda us: T0 + timedelta(microseconds=us))
money = st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False, allow_infinity=False)
credits = st.builds(
    Credit,
    model=st.sampled_from(["last_click", "linear"]),
    touch_id=text,
    kind=st.sampled_from(["click", "push", ""]),
    link_id=text,
    campaign=text,
    push_hash=text,
    credit=st.decimals(0, 1, places=9),
    revenue=money,
)
rows = st.builds(
    Conversion,
    project_id=text,
    goal_id=text,
    conversion_key=text,
    account_id=text,
    visitor_id=text,
    event_id=text,
    event_type=text,
    occurred_at=times,
    received_at=times,
    revenue=money,
    currency=text,
    products_count=st.integers(0, 50),
    transaction_id=text,
    experiment_ids=st.tuples(text),
    variation_ids=st.tuples(text),
    version=st.integers(0, 2**62),
    status=text,
    status_class=st.sampled_from(["normal", "provisional", "reversed"]),
    is_deleted=st.booleans(),
    disable_postbacks=st.booleans(),
    attributed_click_id=text,
    attributed_external_click_id=text,
    attributed_link_id=text,
    attributed_at=st.none() | times,
    credits=st.lists(credits, max_size=3).map(tuple),
)


def test_the_facts_are_the_planners_fields():
    assert set(FACTS) == {
        "project_id", "goal_id", "conversion_key", "occurred_at", "revenue", "currency", "transaction_id",
        "version", "status", "status_class", "is_deleted", "disable_postbacks", "attributed_click_id",
        "attributed_external_click_id", "attributed_link_id",
    }  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, min_size=1, max_size=8))
def test_facts_read_from_the_records_plan_what_the_rows_plan(batch: list[Conversion]):
    records = encode_rows("conversions", batch)
    facts = [f for r in records for f in decode_conversion_facts(r)]
    assert len(facts) == len(batch)
    for row, fact in zip(batch, facts, strict=True):
        for name in FACTS:
            assert getattr(fact, name) == getattr(row, name), name
        assert fact.occurred_at.utcoffset() == row.occurred_at.utcoffset()
        assert orjson.dumps(announced(fact)) == orjson.dumps(announced(row))
        for event in WebhookEvent:
            assert webhook_body(fact, event) == webhook_body(row, event)
        assert decide(fact, None) == decide(row, None)
        assert macro_values(fact, "x", "sale") == macro_values(row, "x", "sale")
    # the alert rules' input gets each row's JSON as the stage wrote it
    items = [i for r in records for i in conversion_items(r)]
    assert items == [row.__pydantic_serializer__.to_json(row) for row in batch]


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"[]",
        b'{"envelope":1,"kind":"sessions","schema":1,"items":[]}',
        b'{"envelope":99,"kind":"conversions","schema":1,"items":[]}',
        b'{"envelope":1,"kind":"conversions","schema":1,"items":[{"project_id":"p"}]}',
    ],
)
def test_anything_else_is_an_envelope_error(value: bytes):
    with pytest.raises(EnvelopeError):
        decode_conversion_facts(value)


def test_defaults_are_the_rows():
    row: dict[str, Any] = orjson.loads(encode_rows("conversions", [_row()])[0])["items"][0]
    for name in ("status", "status_class", "is_deleted", "disable_postbacks", "attributed_link_id"):
        del row[name]
    value = orjson.dumps({"envelope": 1, "kind": "conversions", "schema": 1, "items": [row]})
    (fact,) = decode_conversion_facts(value)
    model = Conversion.model_validate(row)
    for name in FACTS:
        assert getattr(fact, name) == getattr(model, name), name


def _row() -> Conversion:
    return Conversion(
        project_id="p", goal_id="g", conversion_key="k", account_id="a", visitor_id="v", event_id="e",
        event_type="hit_goal", occurred_at=T0, received_at=T0, revenue=Decimal("9.9900"), currency="EUR",
        products_count=1, transaction_id="t", experiment_ids=(), variation_ids=(), version=3,
    )  # fmt: skip
