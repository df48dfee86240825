"""The edge accepts the three Convert formats exactly as the reference sends them, and rejects bad input
with a 4xx JSON body naming the problem. Runs the real edge over the real local durable log."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from schemas.events import EventType
from tests.edge_helpers import local_edge, logged_events

REF_JSON = {
    "cid": "12345",
    "pid": "12345",
    "seg": {
        "browser": "CH",
        "devices": ["DESK"],
        "source": "direct",
        "campaign": "",
        "new": 1,
        "ctry": "RO",
        "cust": ["123", "456"],
    },
    "vid": "1588166554499-0.2020703998482254",
    "ev": [
        {"evt": "viewExp", "vars": ["12345", "6789"], "exps": ["ABCD", "DEF"]},
        {"evt": "hitGoal", "goals": [12345], "vars": ["12345", "6789"], "exps": ["ABCD", "DEF"]},
        {
            "evt": "tr",
            "goals": [12345],
            "vars": ["12345", "6789"],
            "exps": ["ABCD", "DEF"],
            "r": 123.23,
            "prc": 2,
        },
    ],
}
REF_QUERY = (
    "cid=12345&pid=12345&seg[browser]=CH&seg[devices][]=DESK&seg[source]=direct&seg[campaign]=test_campaign"
    "&seg[new]=1&seg[cust][]=123&seg[cust][]=456&vid=1588166554499-0.2020703998482254&ev[0][evt]=viewExp"
    "&ev[0][vars][]=12345&ev[0][vars][]=6789&ev[0][exps][]=ABCD&ev[0][exps][]=DEF&ev[1][evt]=hitGoal"
    "&ev[1][goals][]=12345&ev[1][vars][]=12345&ev[1][vars][]=6789&ev[1][exps][]=ABCD&ev[1][exps][]=DEF"
)
UA = {"User-Agent": "pytest"}


@pytest.fixture
async def edge(tmp_path: Path):
    app, log = local_edge(tmp_path, max_body_bytes=4096, max_events_per_request=10)
    async with TestClient(TestServer(app)) as client:
        yield client, log


async def test_reference_json_post(edge):
    client, log = edge
    resp = await client.post("/track", data=orjson.dumps(REF_JSON), headers=UA)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["accepted"] == 3
    events = logged_events(log)
    assert [e.type for e in events] == [EventType.VIEW_EXP, EventType.HIT_GOAL, EventType.TRANSACTION]
    tr = events[2]
    assert tr.revenue == Decimal("123.23") and tr.products_count == 2 and tr.goal_ids == ("12345",)
    assert [(x.experiment_id, x.variation_id) for x in tr.experiments] == [("ABCD", "12345"), ("DEF", "6789")]
    assert tr.segment.devices == ("DESK",) and tr.segment.country == "RO" and tr.segment.returning is True
    assert tr.segment.custom == ("123", "456") and tr.user_agent == "pytest"
    assert [e.event_id for e in events] == body["event_ids"]


async def test_reference_get_bracket_query(edge):
    client, log = edge
    resp = await client.get("/track?" + REF_QUERY, headers=UA)
    assert resp.status == 200, await resp.text()
    events = logged_events(log)
    assert [e.type for e in events] == [EventType.VIEW_EXP, EventType.HIT_GOAL]
    assert events[1].goal_ids == ("12345",) and events[1].segment.campaign == "test_campaign"
    assert events[0].visitor_id == "1588166554499-0.2020703998482254"


async def test_legacy_goals_and_transaction_mixed(edge):
    client, log = edge
    resp = await client.get(
        "/track/?c=1111&p=2222&e=100-200&g=100,101,102&ga=3&t=5.6|TX-9|49.90|3", headers=UA
    )
    assert resp.status == 200, await resp.text()
    hit, tr = logged_events(log)
    assert hit.type is EventType.HIT_GOAL and hit.goal_ids == ("100", "101", "102")
    assert tr.type is EventType.TRANSACTION and tr.goal_ids == ("5", "6")
    assert (tr.transaction_id, tr.revenue, tr.products_count) == ("TX-9", Decimal("49.90"), 3)
    assert hit.account_id == "1111" and hit.project_id == "2222"
    assert hit.experiments[0].experiment_id == "100" and hit.experiments[0].variation_id == "200"
    assert hit.visitor_id == tr.visitor_id and hit.visitor_id.startswith("anon-")


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code", "needle"),
    [
        ("POST", "/track", orjson.dumps(REF_JSON), {}, 400, "missing_user_agent", "User-Agent"),
        ("POST", "/track", b"{not json", UA, 400, "invalid_json", "not valid JSON"),
        ("POST", "/track", b"[1,2]", UA, 400, "invalid_body", "JSON object"),
        (
            "POST",
            "/track",
            orjson.dumps({**REF_JSON, "ev": [{"evt": "buy", "goals": [1]}]}),
            UA,
            400,
            "unknown_event_type",
            "ev.0.evt",
        ),
        (
            "POST",
            "/track",
            orjson.dumps({**REF_JSON, "ev": [{"evt": "tr", "goals": [1], "r": "lots"}]}),
            UA,
            400,
            "invalid_field",
            "ev.0.r",
        ),
        (
            "POST",
            "/track",
            orjson.dumps({**REF_JSON, "ev": [{"evt": "hitGoal", "goals": "7"}]}),
            UA,
            400,
            "invalid_field",
            "goals",
        ),
        (
            "POST",
            "/track",
            orjson.dumps({**REF_JSON, "ev": [{"evt": "hitGoal"}]}),
            UA,
            400,
            "invalid_field",
            "needs at least one goal",
        ),
        ("POST", "/track", orjson.dumps({**REF_JSON, "vid": ""}), UA, 400, "invalid_field", "vid"),
        (
            "POST",
            "/track",
            orjson.dumps({**REF_JSON, "ev": [REF_JSON["ev"][0]] * 11}),
            UA,
            413,
            "payload_too_large",
            "at most 10",
        ),
        ("POST", "/track", b"x" * 5000, UA, 413, "payload_too_large", "4096"),
        ("GET", "/track/?c=1&p=2&g=1,2&ga=3", None, UA, 400, "goal_count_mismatch", "ga says 3"),
        ("GET", "/track/?c=1&p=2&g=1,2", None, UA, 400, "invalid_field", "ga"),
        ("GET", "/track/?c=1&p=2&t=1|TX|abc|1", None, UA, 400, "invalid_field", "transaction value"),
        ("GET", "/track/?c=1&p=2&t=1|TX|1", None, UA, 400, "invalid_field", "GOAL|TRANSACTION_ID"),
        ("GET", "/track/?c=1&p=2", None, UA, 400, "missing_field", "g (goal ids) or t"),
        ("GET", "/track/?p=2&g=1&ga=1", None, UA, 400, "missing_field", "account id"),
        ("GET", "/track?ev[0][evt]=viewExp", None, UA, 400, "invalid_field", "cid"),
        ("DELETE", "/track", None, UA, 405, "method_not_allowed", "DELETE"),
        ("GET", "/nope", None, UA, 404, "not_found", "/nope"),
    ],
)
async def test_rejections(edge, method, path, body, headers, status, code, needle):
    client, log = edge
    skip = [] if "User-Agent" in headers else ["User-Agent"]
    resp = await client.request(method, path, data=body, headers=headers, skip_auto_headers=skip)
    assert resp.status == status, await resp.text()
    err = (await resp.json())["error"]
    assert err["code"] == code
    assert needle in err["message"] or any(needle in str(d) for d in err.get("details", []))
    assert logged_events(log) == []


async def test_healthz_and_metrics(edge):
    client, _ = edge
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    await client.post("/track", data=orjson.dumps(REF_JSON), headers=UA)
    text = await (await client.get("/metrics")).text()
    assert 'trackpipe_edge_events_accepted_total{format="convert_json"} 3.0' in text
    # the hot path served it, and still writes the canonical JSON itself
    assert 'trackpipe_edge_convert_requests_total{path="fast"}' in text
    assert "trackpipe_edge_convert_fast_layout_exact 1.0" in text
