"""Issue 13, the save-time half: goal webhook secrets (returned once, rotation with grace), goal
postback URLs and link postback templates checked by the SSRF guard when saved, and the traffic
source's click id kept on the click. The real edge over the real local log and file config store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ingest.app import build_edge_app
from ingest.config.edge import EdgeConfig
from ingest.config.file_store import FileConfigStore
from ingest.http.common import CONFIG_STORE
from schemas.events import EventType
from schemas.outbound.config import OutboundConfig
from schemas.outbound.signing import KeyRing, parse_secret, signed_headers, verify
from tests.edge_helpers import logged_events
from tests.integration.test_inputs_edge import AUTH, REF_GOAL, UA, click, create_goal, create_link
from trackpipe.local_publisher import LocalLogPublisher
from trackpipe.locallog import LocalLog

GOALS = "/api/v1/conversions/goals"


def app_for(tmp: Path, allow: str = "", grace_s: int = 86_400):
    log = LocalLog(tmp / "log")
    app = build_edge_app(
        EdgeConfig(),
        lambda: LocalLogPublisher(log, partitions=4),
        config_store=FileConfigStore(tmp / "config.log"),
        admin_key=AUTH["Authorization"].removeprefix("Bearer "),
        outbound=OutboundConfig(allow_networks=allow, secret_grace_s=grace_s),
    )
    return app, log


@pytest.fixture
async def edge(tmp_path: Path):
    app, log = app_for(tmp_path)
    async with TestClient(TestServer(app)) as client:
        yield client, log


def ring_of(client: TestClient, goal_id: str) -> KeyRing:
    """The key ring the store holds for the goal (what the delivery engine will sign with)."""
    assert client.app is not None
    goal = client.app[CONFIG_STORE].state.goal(goal_id)
    assert goal is not None
    ring = goal.key_ring()
    assert ring is not None
    return ring


def signs(secret_text: str, ring_secrets: Any) -> bool:
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers("msg_1", now, b'{"a":1}', [parse_secret(secret_text)])
    try:
        verify(b'{"a":1}', headers, ring_secrets, now=now)
    except Exception:
        return False
    return True


async def test_secret_is_returned_once_and_verifies_with_the_stored_ring(edge, tmp_path):
    client, _ = edge
    goal = await create_goal(client)
    secret = goal["signing_secret"]
    assert secret.startswith("whsec_")
    got = await (await client.get(f"{GOALS}/{goal['id']}", headers=AUTH)).text()
    listed = await (await client.get(GOALS, headers=AUTH)).text()
    assert secret.removeprefix("whsec_") not in got + listed
    assert "signing" not in got + listed
    ring = ring_of(client, goal["id"])
    assert signs(secret, ring.signing_secrets(datetime.now(UTC)))
    assert not signs("whsec_" + "QUJD" * 8, ring.signing_secrets(datetime.now(UTC)))


async def test_rotation_keeps_both_secrets_signing_during_grace(edge):
    client, _ = edge
    goal = await create_goal(client)
    resp = await client.post(f"{GOALS}/{goal['id']}/secret/rotate", headers=AUTH)
    assert resp.status == 200, await resp.text()
    rotated = await resp.json()
    assert rotated["signing_secret"] != goal["signing_secret"]
    now = datetime.now(UTC)
    expires = datetime.fromisoformat(rotated["previous_expires_at"])
    assert timedelta(hours=23) < expires - now <= timedelta(days=1)
    ring = ring_of(client, goal["id"])
    during = ring.signing_secrets(now)
    assert signs(goal["signing_secret"], during) and signs(rotated["signing_secret"], during)
    after = ring.signing_secrets(now + timedelta(days=1, seconds=1))
    assert not signs(goal["signing_secret"], after) and signs(rotated["signing_secret"], after)
    got = await (await client.get(f"{GOALS}/{goal['id']}", headers=AUTH)).text()
    assert rotated["signing_secret"].removeprefix("whsec_") not in got
    missing = await client.post(f"{GOALS}/nope/secret/rotate", headers=AUTH)
    assert missing.status == 404
    assert (await client.post(f"{GOALS}/{goal['id']}/secret/rotate")).status == 401


async def test_patch_sets_and_clears_postback_url(edge):
    client, _ = edge
    goal = await create_goal(client)
    url = "https://advertiser.example/hooks/conv"
    resp = await client.patch(f"{GOALS}/{goal['id']}", json={"postback_url": url}, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["postback_url"] == url
    resp = await client.patch(f"{GOALS}/{goal['id']}", json={"goal": {"postback_url": None}}, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["postback_url"] is None


REFUSED = [
    ("http://127.0.0.1/x", "loopback"),
    ("http://localhost:8080/x", "loopback"),
    ("http://10.1.2.3/x", "private"),
    ("http://192.168.0.1/x", "private"),
    ("http://169.254.10.10/x", "link_local"),
    ("http://169.254.169.254/latest/meta-data", "metadata"),
    ("http://metadata.google.internal/x", "metadata"),
    ("http://0177.0.0.1/x", "numeric_trick"),
    ("http://0x7f.1/x", "numeric_trick"),
    ("http://2130706433/x", "numeric_trick"),
    ("http://[::ffff:127.0.0.1]/x", "ipv4_in_ipv6"),
    ("http://[::1]/x", "loopback"),
    ("gopher://example.com/x", "http"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_ssrf_refused_at_save_time_on_goals_and_links(edge, url, reason):
    client, _ = edge
    resp = await client.post(GOALS, json={"name": "g", "postback_url": url}, headers=AUTH)
    assert resp.status == 400, await resp.text()
    err = (await resp.json())["error"]
    assert err["code"] == "invalid_field" and "postback_url" in err["message"] and reason in err["message"]
    goal = await create_goal(client)
    resp = await client.patch(f"{GOALS}/{goal['id']}", json={"postback_url": url}, headers=AUTH)
    assert resp.status == 400 and reason in (await resp.json())["error"]["message"]
    if url.startswith("http"):
        template = url + "?cid={external_id}"
        resp = await client.post(
            "/api/v1/links",
            json={"url": "https://shop.example/", "postback_template": template},
            headers=AUTH,
        )
        assert resp.status == 400, await resp.text()
        err = (await resp.json())["error"]
        assert "postback_template" in err["message"] and reason in err["message"]


async def test_allow_list_lets_on_premise_receivers_through(tmp_path):
    app, _ = app_for(tmp_path, allow="127.0.0.0/8,10.0.0.0/8")
    async with TestClient(TestServer(app)) as client:
        for url in ("http://127.0.0.1:9000/hook", "http://10.1.2.3/hook"):
            resp = await client.post(GOALS, json={"name": "g", "postback_url": url}, headers=AUTH)
            assert resp.status == 201, await resp.text()
        link = await create_link(client, postback_template="http://127.0.0.1:9000/pb?c={click_id}")
        assert link["postback_template"].startswith("http://127.0.0.1:9000/")
        # never lifted by the allow-list
        resp = await client.post(
            GOALS, json={"name": "g", "postback_url": "http://[::ffff:7f00:1]/"}, headers=AUTH
        )
        assert resp.status == 400


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"postback_template": "https://s.example/pb?c={clickid}&x={nope}"}, "{clickid}, {nope}"),
        ({"postback_template": "https://{click_id}.example/pb"}, "host"),
        ({"postback_template": "https://s.example/pb?c={click_id"}, "'{'"),
        ({"postback_template": "https://s.example/pb#{click_id}"}, "fragment"),
        ({"postback_template": "https://s.example/pb", "postback_method": "PUT"}, "postback_method"),
        ({"postback_statuses": "sale, bad status!"}, "postback_statuses"),
        ({"postback_status_map": "lead=install sale"}, "postback_status_map"),
        ({"external_click_param": "click id"}, "external_click_param"),
    ],
)
async def test_link_postback_settings_are_validated(edge, fields, needle):
    client, _ = edge
    body = {"url": "https://shop.example/", **fields}
    resp = await client.post("/api/v1/links", json=body, headers=AUTH)
    assert resp.status == 400, await resp.text()
    err = (await resp.json())["error"]
    assert err["code"] == "invalid_field"
    assert needle in err["message"] or any(needle in str(d) for d in err.get("details", []))
    link = await create_link(client)
    resp = await client.patch(f"/api/v1/links/{link['id']}", json={"link": fields}, headers=AUTH)
    assert resp.status == 400, await resp.text()


async def test_link_postback_settings_saved_patched_and_the_click_keeps_the_source_id(edge):
    client, log = edge
    link = await create_link(
        client,
        external_click_param="clickid",
        postback_template="https://source.example/pb?cid={external_id}&p={payout}&s={status}",
        postback_method="POST",
        postback_statuses="sale lead",
        postback_status_map="lead=install sale=bill rejected=trash",
        postback_updates=True,
    )
    assert link["postback_method"] == "POST" and link["postback_updates"] is True
    resp = await click(client, link["id"], "?clickid=XYZ-42&utm_source=fb")
    assert resp.status == 302
    assert "XYZ-42" not in resp.headers["Location"]  # kept, not forwarded
    resp = await client.patch(
        f"/api/v1/links/{link['id']}",
        json={"external_click_param": "sub1", "postback_template": None},
        headers=AUTH,
    )
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert patched["postback_template"] is None and patched["external_click_param"] == "sub1"
    assert (await click(client, link["id"], "?sub1=S1&clickid=ignored")).status == 302
    plain = await create_link(client)
    assert (await click(client, plain["id"], "?clickid=nope")).status == 302
    clicks = [e for e in logged_events(log) if e.type is EventType.CLICK]
    assert [e.external_click_id for e in clicks] == ["XYZ-42", "S1", None]
    bad = await client.patch(f"/api/v1/links/{link['id']}", json={"url": None}, headers=AUTH)
    assert bad.status == 400
    assert (await client.patch("/api/v1/links/nope", json={}, headers=AUTH)).status == 404


async def test_outbound_config_survives_an_edge_restart(tmp_path):
    app, _ = app_for(tmp_path)
    async with TestClient(TestServer(app)) as client:
        goal = await create_goal(client, {**REF_GOAL["goal"], "postback_url": "https://adv.example/h"})
        rotated = await (await client.post(f"{GOALS}/{goal['id']}/secret/rotate", headers=AUTH)).json()
        link = await create_link(
            client, external_click_param="clickid", postback_template="https://s.example/p"
        )
    app, log = app_for(tmp_path)
    async with TestClient(TestServer(app)) as client:
        got = await (await client.get(f"{GOALS}/{goal['id']}", headers=AUTH)).json()
        assert got["postback_url"] == "https://adv.example/h"
        ring = ring_of(client, goal["id"])
        now = datetime.now(UTC)
        assert signs(goal["signing_secret"], ring.signing_secrets(now))
        assert signs(rotated["signing_secret"], ring.signing_secrets(now))
        assert (await click(client, link["id"], "?clickid=R1")).status == 302
        assert [e.external_click_id for e in logged_events(log) if e.type is EventType.CLICK] == ["R1"]
    assert UA  # the shared helpers send the same User-Agent
