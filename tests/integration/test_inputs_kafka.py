"""Every click, postback and conversion format, sent exactly as its reference document shows it, lands on
the real Kafka broker as canonical events (distributed edge: Kafka publisher + Kafka config store)."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ingest.app import build_edge_app
from ingest.config.edge import EdgeConfig
from ingest.config.kafka_store import KafkaConfigStore
from ingest.produce.kafka_publisher import KafkaPublisher
from schemas.envelope import decode_envelope
from schemas.events import Event, EventType
from tests.integration.test_inputs_edge import ADMIN_KEY, AUTH, REF_GOAL, REF_PVTLNK, UA


async def create_topics(bootstrap: str, events_topic: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(events_topic, partitions, 1),
                NewTopic(f"{events_topic}.config", 1, 1, topic_configs={"cleanup.policy": "compact"}),
            ]
        )
    finally:
        await admin.close()


async def read_events(bootstrap: str, topic: str, partitions: int = 3) -> list[Event]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records = []
        while sum(ends.values()) > len(records):
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "records missing from the topic"
            for msgs in batch.values():
                records.extend(msgs)
    finally:
        await consumer.stop()
    events = [e for rec in records for e in decode_envelope(rec.value)]
    return sorted(events, key=lambda e: e.event_id)


async def test_reference_formats_land_on_kafka(kafka_bootstrap, unique_name):
    topic = unique_name("inputs")
    await create_topics(kafka_bootstrap, topic)
    app = build_edge_app(
        EdgeConfig(),
        lambda: KafkaPublisher(kafka_bootstrap, topic, partitions=3),
        config_store=KafkaConfigStore(kafka_bootstrap, f"{topic}.config"),
        admin_key=ADMIN_KEY,
    )
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/api/v1/conversions/goals", json=REF_GOAL, headers=AUTH)
        assert resp.status == 201, await resp.text()
        goal = await resp.json()
        token = goal["token"]
        resp = await client.post(
            "/api/v1/links",
            json={"url": "https://shop.example/offer", "goal": goal["id"], "utm_source": "facebook"},
            headers=AUTH,
        )
        link = await resp.json()

        async def ok(method: str, path: str, **kw: object) -> None:
            resp = await client.request(method, path, allow_redirects=False, **kw)  # type: ignore[arg-type]
            assert resp.status in (200, 302), (path, resp.status, await resp.text())

        # a click, with the reference's UTM parameters (PVTLNK "Use UTM Parameters")
        resp = await client.get(
            f"/c/{link['id']}?utm_source=facebook&utm_medium=cpc&utm_campaign=winter_sale",
            headers=UA,
            allow_redirects=False,
        )
        assert resp.status == 302
        hit = parse_qs(urlsplit(resp.headers["Location"]).query)["click_id"][0]
        visitor = resp.cookies["tp_vid"].value
        # FunnelFlux reference URLs
        await ok("GET", f"/pb/?hit={hit}&tx=TX-1&rev=20", headers=UA)
        await ok("GET", f"/pb/?hit={hit}&rev=5&disable_postbacks=true", headers=UA)
        await ok("GET", f"/pb/?hit={hit}&tx=TX-1&rev=20&status=rejected", headers=UA)
        await ok("GET", f"/pb/?vid={visitor}&p={link['id']}&tx=TX-2&rev=7", headers=UA)
        # PVTLNK reference: postback URL, auto-attribution, pixel, server-side API
        await ok("POST", f"/api/conversions/track/{token}", data=orjson.dumps(REF_PVTLNK), headers=UA)
        auto = {"value": 49.99, "currency": "EUR"}  # click_id optional - will be auto-detected
        await ok("POST", f"/api/conversions/track/{token}", json=auto, headers=UA)
        await ok("GET", f"/api/conversions/track/{token}?value=99.99&order_id=ORDER-123", headers=UA)
        await ok(
            "POST",
            "/api/v1/conversions/track",
            json={"postback_token": token, "value": 49.99, "currency": "USD", "order_id": "ORDER-123"},
            headers=UA,
        )
        # Pushwoosh request shapes
        await ok(
            "POST",
            "/json/1.3/pushStat",
            json={"request": {"application": "12345-67890", "hwid": "hw-1", "hash": "hash_value"}},
            headers=UA,
        )
        await ok(
            "POST",
            "/json/1.3/postEvent",
            json={
                "request": {
                    "application": "12345-67890",
                    "hwid": "hw-1",
                    "userId": "u-1",
                    "event": "Purchase",
                    "attributes": {"msgHash": "hash_value"},
                }
            },
            headers=UA,
        )

    events = await read_events(kafka_bootstrap, topic)
    kinds = [(e.type, e.source_format) for e in events]
    assert kinds == [
        (EventType.CLICK, "click"),
        *[(EventType.POSTBACK, "funnelflux")] * 4,
        (EventType.POSTBACK, "pvtlnk"),
        (EventType.POSTBACK, "pvtlnk"),
        (EventType.POSTBACK, "pvtlnk_pixel"),
        (EventType.POSTBACK, "pvtlnk_api"),
        (EventType.PUSH_OPEN, "pushwoosh_pushstat"),
        (EventType.CUSTOM_EVENT, "pushwoosh_postevent"),
    ]
    clk, pb1, pb2, pb3, pb4, pv1, pv2, pixel, api, opened, custom = events
    assert clk.click_id == hit and clk.visitor_id == visitor
    assert clk.attributes["utm_campaign"] == "winter_sale"
    assert (pb1.click_id, pb1.transaction_id, pb1.revenue) == (hit, "TX-1", Decimal(20))
    assert pb1.goal_ids == (goal["id"],)
    assert pb2.disable_postbacks and pb3.status == "rejected"
    assert pb4.visitor_id == visitor and pb4.link_id == link["id"] and pb4.click_id is None
    assert (pv1.transaction_id, pv1.click_id, pv1.revenue) == ("ORDER-12345", "789", Decimal("99.99"))
    assert pv2.click_id is None and pv2.client_ip == "127.0.0.1" and pv2.currency == "EUR"
    assert pixel.transaction_id == "ORDER-123" and api.transaction_id == "ORDER-123"
    assert all(e.project_id == "default" for e in events[:9])
    assert opened.push_hash == custom.push_hash == "hash_value" and custom.goal_ids == ("Purchase",)
    assert opened.project_id == custom.project_id == "12345-67890"
