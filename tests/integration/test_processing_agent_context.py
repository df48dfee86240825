"""The conversion-stage Faust agent driven through ``Agent.test_context()`` (the middle test tier).

The app runs against the real broker (its producer, tables and changelogs are real); the records are
put straight into a clone of the conversion agent through Faust's test channel, bypassing the
consumer. Two postbacks of one transaction (pending, then approved) arrive as stage messages and must
leave exactly one conversion with the approved revenue, a replayed record must change nothing, and the
agent's state must end up on its changelog.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aiokafka import AIOKafkaConsumer

from processors.messages import Attributed, ConvEvent, Resolution, encode_messages
from processors.runtime.faust.app import TopologyNames, build_faust_app
from schemas.rows import Conversion, ProcessedBatch
from tests.scenario import create_topics, faust_test_options

PARTITIONS = 1
T0 = datetime(2026, 5, 4, 9, tzinfo=UTC)


def postback(event_id: str, at: datetime, status: str, revenue: str) -> Attributed:
    conv = ConvEvent(
        event_id=event_id,
        type="postback",
        key="tx:T-1",
        project_id="p",
        account_id="p",
        visitor_id="",
        occurred_at=at,
        received_at=at,
        goal_ids=("sale",),
        revenue=Decimal(revenue),
        status=status,
        transaction_id="T-1",
    )
    return Attributed(conv=conv, res=Resolution(method="none", visitor_id=""))


async def test_conversion_agent_in_test_context(tmp_path, kafka_bootstrap, unique_name):
    names = TopologyNames(unique_name("events"), unique_name("ctx"))
    await create_topics(kafka_bootstrap, names.all(), PARTITIONS)

    batches: list[ProcessedBatch] = []

    async def writer(batch: ProcessedBatch, token: str) -> None:
        batches.append(batch)

    app = build_faust_app(
        app_id=names.app_id,
        broker=f"kafka://{kafka_bootstrap}",
        topic=names.events,
        partitions=PARTITIONS,
        writer=writer,
        batch_within_s=0.05,
        broker_options=faust_test_options(tmp_path),
    )
    await asyncio.wait_for(app.start(), 60)
    try:
        agent = app.agents[f"{names.app_id}.conversion"]
        pending = encode_messages([postback("e1", T0, "pending", "50")])
        approved = encode_messages([postback("e2", T0 + timedelta(hours=5), "approved", "60")])
        async with agent.test_context() as ctx:
            for value in (pending, approved, approved):  # the last one: a redelivered record
                await ctx.put(value, wait=False)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                rows = [c for b in batches for c in b.conversions]
                if rows and rows[-1].events_merged == 2:
                    break
                await asyncio.sleep(0.1)
        rows = [c for b in batches for c in b.conversions]
        latest: dict[str, Conversion] = {}
        for r in rows:
            if r.conversion_key not in latest or r.version >= latest[r.conversion_key].version:
                latest[r.conversion_key] = r
        assert list(latest) == ["tx:T-1"]
        final = latest["tx:T-1"]
        assert (final.revenue, final.status, final.events_merged, final.is_deleted) == (
            Decimal(60),
            "approved",
            2,
            False,
        )
        assert app.conf.trackpipe_counts.rows["conversions"] == len(rows)
    finally:
        await app.stop()

    # the ledger for the transaction is on the conversion stage's changelog
    consumer = AIOKafkaConsumer(
        f"{names.app_id}-conversion-state-changelog",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    keys: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not keys:
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                keys.extend(m.key for m in msgs if m.value is not None)
    finally:
        await consumer.stop()
    assert any(b"T-1" in k for k in keys)
