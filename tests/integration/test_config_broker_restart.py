"""The distributed configuration store (goals and links on a compacted topic) writes again by itself after
a broker restart: a write that fails while the broker is away must not leave the edge's idempotent
producer refusing every later write (OutOfOrderSequenceNumber), as the event publisher did (issue 11)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ingest.config.kafka_store import KafkaConfigStore
from schemas.config import ConfigStoreError, Goal, goal_record

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 4, tzinfo=UTC)
OUTAGE_S = 6.0


def goal(i: int) -> Goal:
    return Goal(id=f"g{i}", project="p", name=f"G{i}", token=f"token-{i:04d}", created_at=NOW, updated_at=NOW)


async def test_config_writes_work_again_after_a_broker_restart(dedicated_broker, unique_name):
    topic = unique_name("config")
    admin = AIOKafkaAdminClient(bootstrap_servers=dedicated_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()
    store = KafkaConfigStore(dedicated_broker.bootstrap, topic, write_timeout_s=2.0)
    await store.start()
    outcomes: list[tuple[float, str, bool]] = []  # (when, goal id, stored)
    back_at: list[float] = []

    async def admin_writes() -> None:
        """A steady trickle of goal writes through the outage and the restart, as admin clients retrying
        on 503 would send them (bounded in count and time)."""
        deadline = time.monotonic() + 60
        for i in range(2, 400):
            try:
                await store.write([goal_record(goal(i))])
                outcomes.append((time.monotonic(), f"g{i}", True))
            except ConfigStoreError as exc:
                assert exc.retriable, exc
                outcomes.append((time.monotonic(), f"g{i}", False))
            if back_at and sum(ok for at, _, ok in outcomes if at > back_at[0]) >= 5:
                return
            assert time.monotonic() < deadline, f"config writes still refused: {outcomes[-5:]}"
            await asyncio.sleep(0.3)  # a client honouring Retry-After

    try:
        await store.write([goal_record(goal(1))])
        writes = asyncio.create_task(admin_writes())
        dedicated_broker.halt()
        await asyncio.sleep(OUTAGE_S)  # the scenario's length, not a wait for a condition
        await asyncio.to_thread(dedicated_broker.restart)
        back_at.append(time.monotonic())
        await writes
        refused = [g for _, g, ok in outcomes if not ok]
        assert refused, "no write was refused during the outage: the scenario did not happen"
        stored_after = [at for at, _, ok in outcomes if ok and at > back_at[0]]
        assert stored_after and stored_after[0] - back_at[0] < 15, outcomes
        stored = [g for _, g, ok in outcomes if ok]
        assert all(store.state.goal(g) is not None for g in ["g1", *stored])
    finally:
        await store.stop()
    # a new reader sees everything that was acknowledged
    again = KafkaConfigStore(dedicated_broker.bootstrap, topic)
    await again.start()
    try:
        assert all(again.state.goal(g) is not None for g in ["g1", *stored])
    finally:
        await again.stop()
