from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from ingest.formats.clicks import (
    click_event,
    destination,
    link_of_click,
    new_click_id,
    utm_from_query,
    valid_visitor_cookie,
)
from ingest.formats.context import RequestContext
from schemas.config import Link
from schemas.events import EventType

NOW = datetime(2026, 1, 21, 12, tzinfo=UTC)
LINK = Link(
    id="Ab_c-12",
    project="p1",
    url="https://shop.example/path?click_id=old&keep=1#frag",
    campaign="spring",
    utm_source="news",
    created_at=NOW,
)


def test_click_id_carries_its_link():
    event_id, click_id = new_click_id(LINK.id)
    assert click_id == f"{LINK.id}.{event_id}"
    assert link_of_click(click_id) == LINK.id
    for foreign in ("789", "Ab_c-12", "Ab_c-12.not-a-uuid", "a.b." + event_id, ""):
        assert link_of_click(foreign) is None


def test_destination_is_the_registered_url_with_utm_and_click_id():
    url = destination(LINK, {"utm_source": "fb", "utm_term": "shoes"}, "C1", "click_id")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert (parts.scheme, parts.netloc, parts.path, parts.fragment) == (
        "https",
        "shop.example",
        "/path",
        "frag",
    )
    assert query == {"click_id": ["C1"], "keep": ["1"], "utm_source": ["fb"], "utm_term": ["shoes"]}


def test_only_bounded_utm_parameters_pass():
    query = {"utm_source": "a", "url": "https://evil", "utm_bad key": "x", "utm_medium": "m" * 500}
    assert utm_from_query(query) == {"utm_source": "a", "utm_medium": "m" * 200}
    many = {f"utm_k{i}": "v" for i in range(50)}
    assert len(utm_from_query(many)) == 10


def test_visitor_cookie_validation():
    assert valid_visitor_cookie("0190d8a0-0000-7000-8000-000000000000")
    for bad in (None, "", "short", "<script>alert(1)</script>", "x" * 200):
        assert valid_visitor_cookie(bad) is None


def test_click_event():
    ctx = RequestContext(received_at=NOW, client_ip="10.0.0.1", user_agent="")
    ev = click_event(
        LINK,
        event_id="e1",
        click_id="c1",
        visitor_id="v1",
        utm={"utm_source": "news"},
        referrer="https://r",
        ctx=ctx,
    )
    assert ev.type is EventType.CLICK and ev.project_id == ev.account_id == "p1"
    assert ev.attributes == {"utm_source": "news", "referrer": "https://r"}
    assert ev.segment.campaign == "spring" and ev.segment.source == "news" and ev.user_agent is None
