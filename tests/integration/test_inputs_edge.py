"""Clicks, postbacks, PVTLNK conversions, Pushwoosh and the admin API through the real edge over the real
local durable log and the real file config store (the embedded default's edge)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import build_edge_app
from ingest.config.edge import EdgeConfig
from ingest.config.file_store import FileConfigStore
from ingest.http.routes.pvtlnk import PIXEL_GIF
from schemas.events import EventType
from schemas.outbound.deliveries import DeliveryControl
from schemas.reports import ReportSource
from schemas.stream.source import StreamSource
from tests.edge_helpers import logged_events
from trackpipe.local_publisher import LocalLogPublisher
from trackpipe.locallog import LocalLog

ADMIN_KEY = "test-admin-key-0123456789-abcdefghij"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
UA = {"User-Agent": "pytest-inputs"}
# PVTLNK reference, "Create conversion goal"
REF_GOAL = {"goal": {"name": "Q1 Sales", "goal_type": "purchase", "value": 99.00, "currency": "USD"}}
# PVTLNK reference, "Method 1: Postback URL"
REF_PVTLNK = {"value": 99.99, "currency": "USD", "order_id": "ORDER-12345", "click_id": 789}


def inputs_app(
    tmp: Path,
    admin_key: str | None = ADMIN_KEY,
    reports: ReportSource | None = None,
    deliveries: DeliveryControl | None = None,
    stream: StreamSource | None = None,
    **cfg: Any,
):
    log = LocalLog(tmp / "log")
    app = build_edge_app(
        EdgeConfig(**cfg),
        lambda: LocalLogPublisher(log, partitions=4),
        reports,
        config_store=FileConfigStore(tmp / "config.log"),
        admin_key=admin_key,
        deliveries=deliveries,
        stream=stream,
    )
    return app, log


@pytest.fixture
async def edge(tmp_path: Path):
    app, log = inputs_app(tmp_path, max_body_bytes=4096, max_events_per_request=10)
    async with TestClient(TestServer(app)) as client:
        yield client, log


async def create_goal(client: TestClient, body: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = await client.post("/api/v1/conversions/goals", json=body or REF_GOAL, headers=AUTH)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def create_link(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"project": "default", "url": "https://shop.example/landing?ref=x#top", **fields}
    resp = await client.post("/api/v1/links", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def click(client: TestClient, link_id: str, query: str = "", cookies: dict[str, str] | None = None):
    client.session.cookie_jar.clear()  # each click sends exactly the cookies the test names
    headers = dict(UA)
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    resp = await client.get(f"/c/{link_id}{query}", headers=headers, allow_redirects=False)
    return resp


# ---------------------------------------------------------------- admin API


async def test_goal_lifecycle_as_in_the_reference(edge):
    client, _ = edge
    goal = await create_goal(client)
    assert goal["name"] == "Q1 Sales" and goal["goal_type"] == "purchase" and goal["value"] == 99.0
    assert (
        goal["currency"] == "USD" and goal["attribution_window_days"] == 30 and goal["project"] == "default"
    )
    assert len(goal["token"]) >= 32 and goal["track_url"].endswith(f"/api/conversions/track/{goal['token']}")

    flat = await create_goal(
        client, {"project": "p2", "name": "Signup", "goal_type": "signup", "default": True}
    )
    listed = await (await client.get("/api/v1/conversions/goals?project=p2", headers=AUTH)).json()
    assert [g["id"] for g in listed["goals"]] == [flat["id"]]

    resp = await client.patch(
        f"/api/v1/conversions/goals/{goal['id']}",
        json={"goal": {"value": 10.5, "attribution_window_days": 7}},
        headers=AUTH,
    )
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert patched["value"] == 10.5 and patched["attribution_window_days"] == 7
    assert patched["token"] == goal["token"] and patched["name"] == "Q1 Sales"
    got = await (await client.get(f"/api/v1/conversions/goals/{goal['id']}", headers=AUTH)).json()
    assert got["value"] == 10.5

    resp = await client.patch(f"/api/v1/conversions/goals/{goal['id']}", json={"token": "mine"}, headers=AUTH)
    assert resp.status == 400 and "token" in (await resp.json())["error"]["message"]

    ok = await client.post(f"/api/conversions/track/{goal['token']}", json={"value": 1}, headers=UA)
    assert ok.status == 200
    assert (await client.delete(f"/api/v1/conversions/goals/{goal['id']}", headers=AUTH)).status == 204
    resp = await client.get(f"/api/v1/conversions/goals/{goal['id']}", headers=AUTH)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "unknown_goal"
    gone = await client.post(f"/api/conversions/track/{goal['token']}", json={"value": 1}, headers=UA)
    assert gone.status == 404


async def test_goals_survive_a_restart_of_the_edge(tmp_path):
    app, _ = inputs_app(tmp_path)
    async with TestClient(TestServer(app)) as client:
        goal = await create_goal(client)
        link = await create_link(client, goal=goal["id"])
    app, _ = inputs_app(tmp_path)
    async with TestClient(TestServer(app)) as client:
        got = await (await client.get(f"/api/v1/links/{link['id']}", headers=AUTH)).json()
        assert got["goal"] == goal["id"]
        resp = await client.post(f"/api/conversions/track/{goal['token']}", json={"value": 5}, headers=UA)
        assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, 401, "unauthorized"),
        ({"Authorization": f"Basic {ADMIN_KEY}"}, 401, "unauthorized"),
        ({"Authorization": f"Bearer {ADMIN_KEY}x"}, 401, "unauthorized"),
    ],
)
async def test_admin_key_required(edge, headers, status, code):
    client, _ = edge
    resp = await client.post("/api/v1/conversions/goals", json=REF_GOAL, headers=headers)
    assert resp.status == status
    body = await resp.json()
    assert body["error"]["code"] == code
    # the same message whatever was wrong: no hint which part failed
    assert (
        body["error"]["message"]
        == "a valid admin key is required: Authorization: Bearer <TRACKPIPE_ADMIN_KEY>"
    )
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_admin_disabled_without_key(tmp_path):
    app, _ = inputs_app(tmp_path, admin_key=None)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/api/v1/links", headers=AUTH)
        assert resp.status == 403
        assert "TRACKPIPE_ADMIN_KEY" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        ("/api/v1/conversions/goals", {"goal": {"goal_type": "purchase"}}, "name"),
        ("/api/v1/conversions/goals", {"name": "x", "goal_type": "sale"}, "goal_type"),
        ("/api/v1/conversions/goals", {"name": "x", "value": -1}, "value"),
        ("/api/v1/conversions/goals", {"name": "x", "currency": "dollars"}, "currency"),
        ("/api/v1/conversions/goals", {"name": "x", "attribution_window_days": 0}, "attribution_window_days"),
        ("/api/v1/conversions/goals", {"name": "x", "postback_url": "ftp://h/x"}, "postback_url"),
        ("/api/v1/conversions/goals", {"name": "x", "colour": "red"}, "colour"),
        ("/api/v1/links", {"url": "javascript:alert(1)"}, "url"),
        ("/api/v1/links", {"url": "//evil.example/x"}, "url"),
        ("/api/v1/links", {"url": "https://bank.example@evil.example/"}, "user name"),
        ("/api/v1/links", {"url": "https://ok.example/", "goal": "nope"}, "goal"),
        ("/api/v1/links", {"link": "https://ok.example/"}, "link must be a JSON object"),
    ],
)
async def test_admin_rejections_name_the_field(edge, path, body, needle):
    client, _ = edge
    resp = await client.post(path, json=body, headers=AUTH)
    assert resp.status == 400, await resp.text()
    err = (await resp.json())["error"]
    assert needle in err["message"] or any(needle in str(d) for d in err.get("details", []))


# ---------------------------------------------------------------- clicks


async def test_click_redirects_to_the_registered_url_with_click_id(edge):
    client, log = edge
    goal = await create_goal(client)
    link = await create_link(client, goal=goal["id"], utm_source="newsletter", campaign="spring")
    assert link["tracking_url"].endswith(f"/c/{link['id']}")
    resp = await click(client, link["id"], "?utm_campaign=sale&url=https://evil.example/&next=//evil")
    assert resp.status == 302, await resp.text()
    target = urlsplit(resp.headers["Location"])
    query = parse_qs(target.query)
    assert (target.scheme, target.netloc, target.path, target.fragment) == (
        "https",
        "shop.example",
        "/landing",
        "top",
    )
    assert (
        query["ref"] == ["x"] and query["utm_source"] == ["newsletter"] and query["utm_campaign"] == ["sale"]
    )
    assert "url" not in query and "next" not in query
    click_id = query["click_id"][0]
    assert click_id.startswith(link["id"] + ".")
    assert resp.headers["Cache-Control"] == "no-store"

    cookie = resp.cookies["tp_vid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and int(cookie["max-age"]) > 300 * 86400
    (event,) = logged_events(log)
    assert event.type is EventType.CLICK and event.click_id == click_id and event.link_id == link["id"]
    assert event.visitor_id == cookie.value and event.project_id == "default"
    assert event.attributes["utm_source"] == "newsletter" and event.segment.campaign == "spring"
    assert event.user_agent == "pytest-inputs" and event.client_ip


async def test_click_reuses_the_visitor_cookie(edge):
    client, log = edge
    link = await create_link(client)
    first = await click(client, link["id"])
    visitor = first.cookies["tp_vid"].value
    second = await click(client, link["id"], cookies={"tp_vid": visitor})
    assert second.status == 302 and second.cookies["tp_vid"].value == visitor
    bogus = await click(client, link["id"], cookies={"tp_vid": "<script>"})
    assert bogus.cookies["tp_vid"].value not in (visitor, "<script>")
    events = logged_events(log)
    assert [e.visitor_id for e in events] == [visitor, visitor, bogus.cookies["tp_vid"].value]
    assert len({e.click_id for e in events}) == 3


async def test_click_param_and_cookie_names_are_configurable(tmp_path):
    app, log = inputs_app(tmp_path, click_id_param="subid", visitor_cookie="vid")
    async with TestClient(TestServer(app)) as client:
        link = await create_link(client)
        resp = await click(client, link["id"])
        assert resp.status == 302
        assert (
            parse_qs(urlsplit(resp.headers["Location"]).query)["subid"][0] == logged_events(log)[0].click_id
        )
        assert "vid" in resp.cookies


async def test_unknown_link_is_404(edge):
    client, log = edge
    for path in ("/c/nope", "/c/..%2F..%2Fetc", "/c/" + "x" * 100):
        resp = await click(client, path.removeprefix("/c/"))
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "unknown_link"
    assert logged_events(log) == []


# ---------------------------------------------------------------- FunnelFlux postbacks


async def test_postback_by_hit_id_resolves_link_goal_and_default_value(edge):
    client, log = edge
    goal = await create_goal(client)
    link = await create_link(client, goal=goal["id"])
    resp = await click(client, link["id"])
    hit = parse_qs(urlsplit(resp.headers["Location"]).query)["click_id"][0]
    # reference: https://DOMAIN/pb/?hit=REPLACE&tx=REPLACE&rev=REPLACE (+ status, disable_postbacks)
    resp = await client.get(f"/pb/?hit={hit}&tx=TX-1&rev=12.50&status=pending", headers=UA)
    assert resp.status == 200, await resp.text()
    resp = await client.post(f"/pb/?hit={hit}&tx=TX-2&disable_postbacks=true", headers=UA)
    assert resp.status == 200, await resp.text()
    resp = await client.post("/pb/", data=f"hit={hit}&tx=TX-3&currency=eur", headers=UA)
    assert resp.status == 200, await resp.text()
    _, pb1, pb2, pb3 = logged_events(log)
    for pb in (pb1, pb2, pb3):
        assert pb.type is EventType.POSTBACK and pb.click_id == hit and pb.link_id == link["id"]
        assert (
            pb.goal_ids == (goal["id"],) and pb.project_id == "default" and pb.attribution_window_days == 30
        )
        assert pb.visitor_id == ""  # resolved from the click by the processors
    assert (pb1.transaction_id, pb1.revenue, pb1.status, pb1.disable_postbacks) == (
        "TX-1",
        Decimal("12.5"),
        "pending",
        False,
    )
    assert pb2.revenue == Decimal("99") and pb2.currency == "USD" and pb2.disable_postbacks is True
    assert pb3.currency == "EUR"


async def test_postback_by_visitor_and_page(edge):
    client, log = edge
    default = await create_goal(client, {"name": "Lead", "default": True})
    link = await create_link(client)
    resp = await client.get(f"/pb/?vid=visitor-7&p={link['id']}&tx=T9&rev=3", headers=UA)
    assert resp.status == 200, await resp.text()
    other = await create_goal(client, {"project": "p2", "name": "Other"})
    resp = await client.get(f"/pb/?vid=visitor-8&goal={other['id']}", headers=UA)
    assert resp.status == 200, await resp.text()
    pb, pb_goal = logged_events(log)
    assert pb.visitor_id == "visitor-7" and pb.link_id == link["id"] and pb.goal_ids == (default["id"],)
    assert pb.click_id is None and pb.revenue == Decimal("3")
    assert pb_goal.project_id == "p2" and pb_goal.goal_ids == (other["id"],) and pb_goal.link_id is None


@pytest.mark.parametrize(
    ("query", "code", "needle"),
    [
        ("", "missing_field", "hit (click id) or vid"),
        ("?hit=abc.123", "invalid_field", "not a click id issued by this tracker"),
        ("?hit=nolink.0190d8a0-0000-7000-8000-000000000000", "invalid_field", "no known link"),
        ("?hit={hit}&vid=v1", "invalid_query", "not both"),
        ("?vid=v1", "missing_field", "p (the link id) or goal"),
        ("?vid=v1&p=zzz", "invalid_field", "p:"),
        ("?hit={hit}&rev=lots", "invalid_field", "rev"),
        ("?hit={hit}&rev=-5", "invalid_field", "rev"),
        ("?hit={hit}&currency=euros", "invalid_field", "currency"),
        ("?hit={hit}&disable_postbacks=maybe", "invalid_field", "disable_postbacks"),
        ("?hit={hit}&goal=unknown", "invalid_field", "goal"),
        ("?hit={nogoal}", "no_goal", "pass goal="),
    ],
)
async def test_postback_rejections(edge, query, code, needle):
    client, log = edge
    goal = await create_goal(client)
    link = await create_link(client, goal=goal["id"])
    bare = await create_link(client, project="p-without-default")
    hit = parse_qs(urlsplit((await click(client, link["id"])).headers["Location"]).query)["click_id"][0]
    nogoal = parse_qs(urlsplit((await click(client, bare["id"])).headers["Location"]).query)["click_id"][0]
    clicks = len(logged_events(log))
    resp = await client.get("/pb/" + query.format(hit=hit, nogoal=nogoal), headers=UA)
    assert resp.status == 400, await resp.text()
    err = (await resp.json())["error"]
    assert err["code"] == code and needle in err["message"]
    assert len(logged_events(log)) == clicks


# ---------------------------------------------------------------- PVTLNK


async def test_pvtlnk_conversion_as_in_the_reference(edge):
    client, log = edge
    goal = await create_goal(client)
    resp = await client.post(
        f"/api/conversions/track/{goal['token']}", data=orjson.dumps(REF_PVTLNK), headers={**UA, "X": "1"}
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    # auto-attribution variant: no click_id
    resp = await client.post(
        f"/api/conversions/track/{goal['token']}", json={"value": 49.99, "currency": "EUR"}, headers=UA
    )
    assert resp.status == 200
    # API variant with the token in the body
    resp = await client.post(
        "/api/v1/conversions/track",
        json={"postback_token": goal["token"], "value": 49.99, "currency": "USD", "order_id": "ORDER-123"},
        headers=UA,
    )
    assert resp.status == 200, await resp.text()
    first, auto, api = logged_events(log)
    assert body["conversion_id"] == first.event_id and body["goal_id"] == goal["id"]
    assert first.type is EventType.POSTBACK and first.goal_ids == (goal["id"],)
    assert (first.revenue, first.currency, first.transaction_id, first.click_id) == (
        Decimal("99.99"),
        "USD",
        "ORDER-12345",
        "789",
    )
    assert auto.click_id is None and auto.client_ip and auto.user_agent == "pytest-inputs"
    assert auto.currency == "EUR" and auto.transaction_id is None
    assert api.transaction_id == "ORDER-123" and api.source_format == "pvtlnk_api"


async def test_pvtlnk_bad_token_gives_no_hint(edge):
    client, log = edge
    goal = await create_goal(client)
    wrong = goal["token"][:-1] + ("A" if goal["token"][-1] != "A" else "B")
    r1 = await client.post(f"/api/conversions/track/{wrong}", json=REF_PVTLNK, headers=UA)
    r2 = await client.post("/api/conversions/track/short", json=REF_PVTLNK, headers=UA)
    r3 = await client.post(
        "/api/v1/conversions/track", json={**REF_PVTLNK, "postback_token": wrong}, headers=UA
    )
    r4 = await client.post("/api/v1/conversions/track", json=REF_PVTLNK, headers=UA)
    assert (r1.status, r2.status, r3.status, r4.status) == (404, 404, 401, 401)
    messages = {(await r.json())["error"]["message"] for r in (r1, r2, r3, r4)}
    assert messages == {"the postback token is not valid"}
    assert logged_events(log) == []


async def test_pixel_answers_a_gif_and_records(edge):
    client, log = edge
    goal = await create_goal(client)
    link = await create_link(client, goal=goal["id"])
    visitor = (await click(client, link["id"])).cookies["tp_vid"].value
    resp = await client.get(
        f"/api/conversions/track/{goal['token']}?value=99.99&order_id=ORDER-123",
        headers={**UA, "Cookie": f"tp_vid={visitor}"},
    )
    assert resp.status == 200 and resp.content_type == "image/gif"
    assert await resp.read() == PIXEL_GIF and "no-store" in resp.headers["Cache-Control"]
    _, conv = logged_events(log)
    assert conv.transaction_id == "ORDER-123" and conv.revenue == Decimal("99.99")
    assert conv.visitor_id == visitor and conv.source_format == "pvtlnk_pixel"


async def test_pixel_on_bad_input_still_answers_the_gif(edge):
    client, log = edge
    goal = await create_goal(client)
    for path, status in [
        (f"/api/conversions/track/{goal['token']}?value=abc", 400),
        (f"/api/conversions/track/{goal['token']}?currency=dollar", 400),
        ("/api/conversions/track/not-a-token?value=1", 404),
    ]:
        resp = await client.get(path, headers=UA)
        assert resp.status == status and resp.content_type == "image/gif"
        assert await resp.read() == PIXEL_GIF and "no-cache" in resp.headers["Cache-Control"]
    assert logged_events(log) == []
    metrics = await (await client.get("/metrics", headers=AUTH)).text()
    assert 'trackpipe_edge_pixel_rejected_total{reason="invalid_field"} 2.0' in metrics
    assert 'trackpipe_edge_pixel_rejected_total{reason="unknown_token"} 1.0' in metrics


# ---------------------------------------------------------------- Pushwoosh


async def test_pushwoosh_push_open_and_event(edge):
    client, log = edge
    stat = {"request": {"application": "ABCDE-12345", "hwid": "device-1", "hash": "r1-push-hash"}}
    resp = await client.post("/json/1.3/pushStat", json=stat, headers=UA)
    assert resp.status == 200
    body = await resp.json()
    assert body["status_code"] == 200 and body["status_message"] == "OK" and "response" in body
    event = {
        "request": {
            "application": "ABCDE-12345",
            "hwid": "device-1",
            "userId": "user-42",
            "event": "Purchase",
            "attributes": {"msgHash": "r1-push-hash", "amount": 19.5, "vip": True, "tags": ["a"]},
        }
    }
    resp = await client.post("/json/1.3/postEvent", json=event, headers=UA)
    assert resp.status == 200
    assert (await resp.json())["status_code"] == 200
    opened, custom = logged_events(log)
    assert opened.type is EventType.PUSH_OPEN and opened.push_hash == "r1-push-hash"
    assert (
        opened.project_id == "ABCDE-12345"
        and opened.visitor_id == "device-1"
        and opened.device_id == "device-1"
    )
    assert custom.type is EventType.CUSTOM_EVENT and custom.event_name == "Purchase"
    assert (
        custom.goal_ids == ("Purchase",)
        and custom.push_hash == "r1-push-hash"
        and custom.user_id == "user-42"
    )
    assert custom.attributes == {"msgHash": "r1-push-hash", "amount": "19.5", "vip": "true", "tags": '["a"]'}


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/json/1.3/pushStat", b'{"request": {"application": "A", "hash": "h"}}', 400, "request.hwid"),
        ("/json/1.3/pushStat", b"{nope", 400, "not valid JSON"),
        ("/json/1.3/pushStat", b'{"application": "A"}', 400, '{"request"'),
        ("/json/1.3/postEvent", b'{"request": {"application": "A", "hwid": "h"}}', 400, "request.event"),
        (
            "/json/1.3/postEvent",
            b'{"request": {"application": "a b", "hwid": "h", "event": "e"}}',
            400,
            "application",
        ),
        (
            "/json/1.3/postEvent",
            orjson.dumps(
                {
                    "request": {
                        "application": "A",
                        "hwid": "h",
                        "event": "e",
                        "attributes": {str(i): i for i in range(11)},
                    }
                }
            ),
            413,
            "at most 10",
        ),
        ("/json/1.3/postEvent", b'{"request": {"x": "' + b"y" * 5000 + b'"}}', 413, "4096"),
    ],
)
async def test_pushwoosh_errors_in_pushwoosh_shape(edge, path, body, status, needle):
    client, log = edge
    resp = await client.post(path, data=body, headers={**UA, "Content-Type": "application/json"})
    assert resp.status == status
    answer = await resp.json()
    assert answer["status_code"] == status and needle in answer["status_message"]
    assert answer["response"]["error"]["message"] == answer["status_message"]
    assert logged_events(log) == []


# ---------------------------------------------------------------- limits


async def test_rate_limit_per_token_and_application(tmp_path):
    app, log = inputs_app(tmp_path, rate_limit_per_minute=2)
    async with TestClient(TestServer(app)) as client:
        goal = await create_goal(client)
        other = await create_goal(client, {"name": "Other"})
        path = f"/api/conversions/track/{goal['token']}"
        statuses = [(await client.post(path, json={"value": 1}, headers=UA)).status for _ in range(2)]
        limited = await client.post(path, json={"value": 1}, headers=UA)
        assert statuses == [200, 200] and limited.status == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert (await limited.json())["error"]["code"] == "rate_limited"
        pixel = await client.get(path + "?value=1", headers=UA)
        assert pixel.status == 429 and pixel.content_type == "image/gif" and "Retry-After" in pixel.headers
        # another token has its own budget
        assert (await client.post(f"/api/conversions/track/{other['token']}", headers=UA)).status == 200

        stat = {"request": {"application": "APP-1", "hwid": "d", "hash": "h"}}
        answers = [await client.post("/json/1.3/pushStat", json=stat, headers=UA) for _ in range(3)]
        assert [a.status for a in answers] == [200, 200, 429]
        assert (await answers[2].json())["status_code"] == 429 and "Retry-After" in answers[2].headers
    assert len(logged_events(log)) == 2 + 1 + 2


async def test_body_size_limit(edge):
    client, log = edge
    goal = await create_goal(client)
    big = orjson.dumps({"value": 1, "order_id": "x", "pad": "y" * 5000})
    for path in (f"/api/conversions/track/{goal['token']}", "/api/v1/conversions/track", "/pb/"):
        resp = await client.post(path, data=big, headers={**UA, "Content-Type": "application/json"})
        assert resp.status == 413, path
        assert (await resp.json())["error"]["code"] == "payload_too_large"
    resp = await client.post("/api/v1/links", data=big, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 413
    assert logged_events(log) == []


async def test_without_config_store_inputs_answer_503(tmp_path):
    log = LocalLog(tmp_path / "log")
    app = build_edge_app(EdgeConfig(), lambda: LocalLogPublisher(log, partitions=1), admin_key=ADMIN_KEY)
    async with TestClient(TestServer(app)) as client:
        for method, path in [("GET", "/c/abc"), ("GET", "/pb/?hit=x"), ("POST", "/api/conversions/track/t")]:
            resp = await client.request(method, path, headers=UA, allow_redirects=False)
            assert resp.status == 503 and (await resp.json())["error"]["code"] == "config_unavailable"
