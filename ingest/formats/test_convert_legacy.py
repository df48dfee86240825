"""The legacy push refuses what no client means (issue 11, defects 4 and 5): Unicode digits in counts,
amounts that are not plain ASCII decimals, and control characters in the visitor id."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ingest.errors import Rejected
from ingest.formats.context import RequestContext
from ingest.formats.convert_legacy import parse_legacy_query
from schemas.events import EventType

CTX = RequestContext(received_at=datetime(2026, 1, 21, tzinfo=UTC), client_ip="1.2.3.4", user_agent="ua")
BASE = {"c": "100", "p": "200"}


def rejected(query: dict[str, str]) -> Rejected:
    with pytest.raises(Rejected) as exc:
        parse_legacy_query({**BASE, **query}, CTX)
    assert exc.value.status == 400
    return exc.value


def test_plain_push_and_transaction():
    events = parse_legacy_query({**BASE, "g": "1,2", "ga": "2", "t": "7.8|TX-1|12.50|3", "vid": "v1"}, CTX)
    assert [e.type for e in events] == [EventType.HIT_GOAL, EventType.TRANSACTION]
    tr = events[1]
    assert tr.revenue == Decimal("12.5") and tr.products_count == 3 and tr.goal_ids == ("7", "8")


@pytest.mark.parametrize("ga", ["\u00b2", "\u0661", "\uff11", "1_0", "+1", "1" * 5000])
def test_goal_count_must_be_an_ascii_number(ga: str):
    err = rejected({"g": "1", "ga": ga})
    assert err.code == "invalid_field" and err.message.startswith("ga: ")


@pytest.mark.parametrize("count", ["\u00b2", "\u0663", "\uff13", "1_000", "1" * 5000])
def test_products_count_must_be_an_ascii_number(count: str):
    err = rejected({"t": f"1|TX|10|{count}"})
    assert err.code == "invalid_field" and err.message.startswith("t: ")


@pytest.mark.parametrize(
    "value", ["1_000", "\u0661\u0662\u0663", "\uff11\uff12\uff13", "\u0967\u0968\u0969", "nan", "inf", "1e3"]
)
def test_transaction_value_must_be_a_plain_decimal(value: str):
    err = rejected({"t": f"1|TX|{value}|1"})
    assert err.code == "invalid_field" and err.message.startswith("t: ")


@pytest.mark.parametrize("vid", ["v\x00", "v\r\nX-Evil: 1", "\u202ev", "v\x85"])
def test_visitor_id_without_control_characters(vid: str):
    err = rejected({"g": "1", "ga": "1", "vid": vid})
    assert err.code == "invalid_field" and err.message.startswith("vid: ")
