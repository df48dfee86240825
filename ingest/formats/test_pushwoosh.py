from datetime import UTC, datetime

import pytest

from ingest.errors import Rejected
from ingest.formats.context import RequestContext
from ingest.formats.pushwoosh import parse_post_event, parse_push_stat
from schemas.events import EventType

CTX = RequestContext(received_at=datetime(2026, 1, 21, tzinfo=UTC), client_ip="1.2.3.4", user_agent="sdk")


def test_push_stat():
    ev = parse_push_stat({"request": {"application": "AAAAA-BBBBB", "hwid": "hw", "hash": "h1", "v": 6}}, CTX)
    assert ev.type is EventType.PUSH_OPEN and ev.push_hash == "h1" and ev.app_id == "AAAAA-BBBBB"
    assert ev.project_id == "AAAAA-BBBBB" and ev.visitor_id == ev.device_id == "hw" and ev.goal_ids == ()


def test_post_event_goal_is_the_event_name():
    body = {
        "request": {
            "application": "A",
            "hwid": "hw",
            "userId": "u",
            "event": "Buy",
            "attributes": {"msgHash": "h1", "n": 3, "none": None, "obj": {"k": [1]}},
        }
    }
    ev = parse_post_event(body, CTX)
    assert ev.type is EventType.CUSTOM_EVENT and ev.goal_ids == ("Buy",) and ev.event_name == "Buy"
    assert ev.push_hash == "h1" and ev.user_id == "u"
    assert ev.attributes == {"msgHash": "h1", "n": "3", "obj": '{"k":[1]}'}


def test_post_event_without_push_hash():
    ev = parse_post_event({"request": {"application": "A", "hwid": "hw", "event": "Open"}}, CTX)
    assert ev.push_hash is None and ev.attributes == {}


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        ([], 400, "invalid_body", "request"),
        ({"request": "x"}, 400, "invalid_body", "request"),
        ({"request": {"hwid": "h", "hash": "x"}}, 400, "missing_field", "request.application"),
        ({"request": {"application": "A", "hwid": "", "hash": "x"}}, 400, "invalid_field", "request.hwid"),
    ],
)
def test_push_stat_rejections(body, status, code, needle):
    with pytest.raises(Rejected) as info:
        parse_push_stat(body, CTX)
    assert (info.value.status, info.value.code) == (status, code) and needle in info.value.message


def test_post_event_attribute_limits():
    base = {"application": "A", "hwid": "h", "event": "e"}
    with pytest.raises(Rejected) as info:
        parse_post_event(
            {"request": {**base, "attributes": {str(i): i for i in range(5)}}}, CTX, max_attributes=4
        )
    assert info.value.status == 413
    with pytest.raises(Rejected, match="longer than"):
        parse_post_event({"request": {**base, "attributes": {"k": "v" * 2000}}}, CTX)


@pytest.mark.parametrize(
    ("key", "value"),
    [("hwid", "hw\x00"), ("hash", "h\u202e"), ("userId", "u\r\n"), ("application", "A\x85")],
)
def test_push_stat_ids_without_control_characters(key, value):
    req = {"application": "A", "hwid": "hw", "hash": "h", key: value}
    with pytest.raises(Rejected) as exc:
        parse_push_stat({"request": req}, CTX)
    assert exc.value.status == 400 and exc.value.code == "invalid_field"
    assert exc.value.message.startswith(f"request.{key}: ")


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("event", "Buy\x00", "request.event"),
        ("hwid", "\u2066hw", "request.hwid"),
        ("attributes", {"msgHash": "m\r\n"}, "request.attributes.msgHash"),
        ("attributes", {"k\x00": "v"}, "request.attributes"),
    ],
)
def test_post_event_ids_without_control_characters(key, value, field):
    req = {"application": "A", "hwid": "hw", "event": "Buy", key: value}
    with pytest.raises(Rejected) as exc:
        parse_post_event({"request": req}, CTX)
    assert exc.value.status == 400 and exc.value.code == "invalid_field"
    assert exc.value.message.startswith(f"{field}: ")
