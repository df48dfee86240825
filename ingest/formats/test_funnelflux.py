from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ingest.errors import Rejected
from ingest.formats.context import RequestContext
from ingest.formats.funnelflux import parse_postback
from schemas.config import ConfigState, Goal, Link, goal_record, link_record

NOW = datetime(2026, 1, 21, 12, tzinfo=UTC)
CTX = RequestContext(received_at=NOW, client_ip="1.2.3.4", user_agent="network/1.0")
HIT = "L1.0190d8a0-0000-7000-8000-000000000000"


def state() -> ConfigState:
    s = ConfigState()
    goals = [
        Goal(
            id="g-link",
            project="p",
            name="Sale",
            value=Decimal("12.5"),
            currency="USD",
            token="t1",
            attribution_window_days=7,
            created_at=NOW,
            updated_at=NOW,
        ),
        Goal(id="g-def", project="p", name="Lead", default=True, token="t2", created_at=NOW, updated_at=NOW),
        Goal(id="g-other", project="q", name="Other", token="t3", created_at=NOW, updated_at=NOW),
    ]
    links = [
        Link(id="L1", project="p", url="https://a.example/", goal="g-link", created_at=NOW),
        Link(id="L2", project="p", url="https://b.example/", created_at=NOW),
    ]
    for rec in [*map(goal_record, goals), *map(link_record, links)]:
        s.apply(rec.key, rec.value)
    return s


def test_hit_postback_takes_link_goal_and_its_defaults():
    ev = parse_postback({"hit": HIT, "tx": "T1", "status": "Hold"}, CTX, state())
    assert ev.goal_ids == ("g-link",) and ev.project_id == "p" and ev.link_id == "L1" and ev.click_id == HIT
    assert ev.revenue == Decimal("12.5") and ev.currency == "USD" and ev.attribution_window_days == 7
    assert ev.status == "Hold" and ev.visitor_id == "" and ev.transaction_id == "T1"


def test_vid_and_page_fall_back_to_the_project_default_goal():
    ev = parse_postback({"vid": "v1", "p": "L2", "rev": "1.23456"}, CTX, state())
    assert ev.goal_ids == ("g-def",) and ev.visitor_id == "v1" and ev.revenue == Decimal("1.2346")


def test_explicit_goal_wins_and_must_match_the_project():
    assert parse_postback({"hit": HIT, "goal": "g-def"}, CTX, state()).goal_ids == ("g-def",)
    with pytest.raises(Rejected, match="another project"):
        parse_postback({"hit": HIT, "goal": "g-other"}, CTX, state())
    assert parse_postback({"vid": "v", "goal": "g-other"}, CTX, state()).project_id == "q"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"hit": HIT, "p": "L2"}, "another link"),
        ({"hit": HIT, "vid": "v"}, "not both"),
        ({"hit": HIT, "tx": "a\x00b"}, "control characters"),
        ({"hit": HIT, "status": "s" * 51}, "longer than 50"),
        ({"hit": HIT, "rev": "nan"}, "not a plain decimal"),
        ({"hit": HIT, "rev": "1e13"}, "not a plain decimal"),
        ({"hit": HIT, "rev": "10000000000000"}, "out of range"),
        ({"hit": HIT, "rev": "1_000"}, "rev: '1_000' is not a plain decimal"),
        ({"hit": HIT, "rev": "\uff11\uff12"}, "rev: .* is not a plain decimal"),
        ({"hit": HIT, "currency": "ZZZ"}, "currency: 'ZZZ' is not an ISO 4217"),
        ({"hit": HIT, "currency": "NaN"}, "currency: 'NaN' is not an ISO 4217"),
        ({"vid": "v\u202e", "goal": "g-def"}, "vid: contains control characters \\(U\\+202E\\)"),
        ({"hit": HIT, "tx": "T\x85"}, "tx: contains control characters \\(U\\+0085\\)"),
    ],
)
def test_rejections(params, needle):
    with pytest.raises(Rejected, match=needle) as info:
        parse_postback(params, CTX, state())
    assert info.value.status == 400
