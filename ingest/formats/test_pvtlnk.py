from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ingest.errors import Rejected
from ingest.formats.context import RequestContext
from ingest.formats.pvtlnk import parse_conversion
from schemas.config import ConfigState, Goal, Link, link_record

NOW = datetime(2026, 1, 21, 12, tzinfo=UTC)
CTX = RequestContext(received_at=NOW, client_ip="1.2.3.4", user_agent="Mozilla/5.0")
GOAL = Goal(
    id="g",
    project="p",
    name="Sale",
    value=Decimal(5),
    currency="EUR",
    token="t",
    attribution_window_days=60,
    created_at=NOW,
    updated_at=NOW,
)


def parse(data, state=None, visitor=None):
    return parse_conversion(
        data, GOAL, CTX, state or ConfigState(), visitor_id=visitor, source_format="pvtlnk"
    )


def test_reference_body():
    ev = parse({"value": 99.99, "currency": "USD", "order_id": "ORDER-12345", "click_id": 789})
    assert (ev.revenue, ev.currency, ev.transaction_id, ev.click_id) == (
        Decimal("99.99"),
        "USD",
        "ORDER-12345",
        "789",
    )
    assert ev.goal_ids == ("g",) and ev.project_id == "p" and ev.attribution_window_days == 60
    assert ev.visitor_id == "" and ev.client_ip == "1.2.3.4" and ev.user_agent == "Mozilla/5.0"


def test_defaults_from_the_goal_and_visitor_from_cookie():
    ev = parse({}, visitor="v-1")
    assert (
        ev.revenue == Decimal(5) and ev.currency == "EUR" and ev.visitor_id == "v-1" and ev.click_id is None
    )


def test_our_click_id_names_its_link_in_the_same_project_only():
    state = ConfigState()
    for link in (
        Link(id="L1", project="p", url="https://a/", created_at=NOW),
        Link(id="L2", project="other", url="https://a/", created_at=NOW),
    ):
        rec = link_record(link)
        state.apply(rec.key, rec.value)
    uuid = "0190d8a0-0000-7000-8000-000000000000"
    assert parse({"click_id": f"L1.{uuid}"}, state).link_id == "L1"
    assert parse({"click_id": f"L2.{uuid}"}, state).link_id is None


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"value": "abc"}, "value"),
        ({"value": True}, "value"),
        ({"currency": 840}, "currency"),
        ({"order_id": {"a": 1}}, "order_id"),
        ({"click_id": 1.5}, "click_id"),
    ],
)
def test_bad_fields_are_named(data, needle):
    with pytest.raises(Rejected, match=needle):
        parse(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"value": "1_000"}, "value: '1_000' is not a plain decimal"),
        ({"value": "\u0661\u0662\u0663"}, "value: '\u0661\u0662\u0663' is not a plain decimal"),
        ({"value": "\u0967\u0968\u0969"}, "value: '\u0967\u0968\u0969' is not a plain decimal"),
        ({"value": "\uff11\uff12\uff13"}, "value: '\uff11\uff12\uff13' is not a plain decimal"),
        ({"value": "nan"}, "value: 'nan' is not a plain decimal"),
        ({"currency": "ZZZ"}, "currency: 'ZZZ' is not an ISO 4217"),
        ({"currency": "NaN"}, "currency: 'NaN' is not an ISO 4217"),
        ({"order_id": "O-1\x00"}, "order_id: contains control characters (U+0000)"),
        ({"order_id": "O-1\r\n"}, "order_id: contains control characters (U+000D)"),
        ({"click_id": "\u202eC"}, "click_id: contains control characters (U+202E)"),
    ],
)
def test_revenue_currency_and_ids_refused(data, message):
    with pytest.raises(Rejected) as exc:
        parse(data)
    assert exc.value.status == 400 and exc.value.code == "invalid_field"
    assert exc.value.message.startswith(message)


def test_five_pixels_of_odd_digits_count_no_revenue():
    """The issue's example: five pixels with digits no client means produced revenue 2025."""
    odd = ["1_000", "\u0661\u0662\u0663", "\uff11\uff12\uff13", "\u0967\u0968\u0969", "8\u00b2"]
    counted = []
    for value in odd:
        try:
            counted.append(parse({"value": value}).revenue)
        except Rejected:
            pass
    assert counted == []
