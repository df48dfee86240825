"""The Faust topology in-process against the real broker: stages, repartition topics, tables, outputs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from processors.pipeline import ConversionPipeline
from processors.runtime.faust.app import BATCH_SLICE_BYTES, TopologyNames, build_faust_app
from schemas.events import Event, EventType
from schemas.rows import Conversion, ProcessedBatch
from tests.scenario import create_topics, event, faust_test_options, produce_events

PARTITIONS = 2
T0 = datetime(2026, 2, 1, 8, tzinfo=UTC)


ev = event


def scenario() -> list[Event]:
    out = []
    for i in range(6):
        v = f"v{i}"
        cid = f"L{i % 2}.{v}"
        out.append(ev(EventType.CLICK, T0 + timedelta(minutes=i), v, click_id=cid, link_id=f"L{i % 2}"))
        # hit postback: lands on the partition of "" and must be repartitioned by click id
        pb = dict(click_id=cid, transaction_id=f"TX{i}", goal_ids=("sale",), revenue=Decimal(10 + i))
        out.append(ev(EventType.POSTBACK, T0 + timedelta(hours=1, minutes=i), "", status="pending", **pb))
        out.append(ev(EventType.POSTBACK, T0 + timedelta(hours=2, minutes=i), "", status="approved", **pb))
        out.append(ev(EventType.HIT_GOAL, T0 + timedelta(minutes=i + 1), v, goal_ids=("signup",)))
    out.append(ev(EventType.POSTBACK, T0 + timedelta(hours=3), "", status="trash", **pb))  # TX5 reversed
    return out


def final(rows: list[Conversion]) -> dict[tuple[str, str], tuple]:
    kept: dict[tuple[str, str], Conversion] = {}
    for r in rows:
        k = (r.goal_id, r.conversion_key)
        if k not in kept or r.version >= kept[k].version:
            kept[k] = r
    return {k: (c.revenue, c.is_deleted, c.attributed_touch_id, c.visitor_id) for k, c in kept.items()}


@pytest.mark.parametrize("slice_bytes", [BATCH_SLICE_BYTES, 1], ids=["default-slices", "one-record-slices"])
async def test_faust_topology_matches_in_process_pipeline(
    kafka_bootstrap, unique_name, tmp_path, slice_bytes
):
    app_id = unique_name("app")
    names = TopologyNames(unique_name("events"), app_id)
    await create_topics(kafka_bootstrap, names.all(), PARTITIONS)

    events = scenario()
    expected = final(list(ConversionPipeline().process_events(events).batch.conversions))
    assert len(expected) == 12 and expected[("sale", "tx:TX5")][1] is True

    # several events per record, several records; then a record that is not an envelope
    await produce_events(kafka_bootstrap, names.events, events, PARTITIONS, per_record=5)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(names.events, b"not an envelope", partition=0)
    finally:
        await producer.stop()

    rows: list[Conversion] = []
    raw_events: list[str] = []

    async def writer(batch: ProcessedBatch, token: str) -> None:
        rows.extend(batch.conversions)
        raw_events.extend(e.event_id for e in batch.events)

    app = build_faust_app(
        app_id=app_id,
        broker=f"kafka://{kafka_bootstrap}",
        topic=names.events,
        partitions=PARTITIONS,
        writer=writer,
        batch_max=50,
        batch_within_s=0.2,
        batch_slice_bytes=slice_bytes,  # 1: every record of a batch is run (and committed) on its own
        broker_options=faust_test_options(tmp_path),
    )
    await asyncio.wait_for(app.start(), 60)
    try:
        counts = app.conf.trackpipe_counts

        def done() -> bool:  # the rows written and their batches committed (counted after the commit)
            return final(rows) == expected and counts.rows["conversions"] >= 12

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not done():  # noqa: ASYNC110 - polling
            await asyncio.sleep(0.5)
        assert final(rows) == expected
        assert sorted(set(raw_events)) == sorted(e.event_id for e in events)
        assert counts.rows["conversions"] >= 12 and counts.records["click"] > 0
    finally:
        await app.stop()

    # the outputs: attributed conversions and sessions as envelopes, the bad record with its reason
    consumer = AIOKafkaConsumer(
        names.conversions_out,
        names.sessions_out,
        names.deadletter,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    seen: dict[str, list] = {}
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(seen) < 3:
            for tp, msgs in (await consumer.getmany(timeout_ms=1000)).items():
                seen.setdefault(tp.topic, []).extend(msgs)
    finally:
        await consumer.stop()
    dead = seen[names.deadletter][0]
    headers = dict(dead.headers)
    assert dead.value == b"not an envelope" and headers["reason"] == b"undecodable"
    assert b"not JSON" in headers["detail"]
    body = orjson.loads(seen[names.conversions_out][0].value)
    assert body["kind"] == "conversions" and body["items"][0]["project_id"] == "p"
    assert orjson.loads(seen[names.sessions_out][0].value)["kind"] == "sessions"
