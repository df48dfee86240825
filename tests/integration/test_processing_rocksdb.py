"""The Faust topology with RocksDB tables against the real broker: state survives a worker restart.

Three runs of the same app (same consumer group and changelogs), each fed new events that need the
state the earlier runs wrote (click, visitor and conversion-ledger state):

1. fresh data dir: the state is written to one RocksDB per table and partition, each with the
   changelog offset it holds, equal to the changelog's last offset;
2. the same data dir: the state is read back from the databases;
3. a new, empty data dir: Faust's recovery rebuilds the databases from the changelogs.

Every run's conversions must equal what the in-process pipeline makes of all events so far.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from processors.pipeline import ConversionPipeline
from processors.runtime.faust.app import TopologyNames, build_faust_app, partition_for
from schemas.events import Event, EventType
from schemas.rows import Conversion, ProcessedBatch
from tests.scenario import create_topics, event, faust_test_options, produce_events

PARTITIONS = 2
VISITORS = 4
T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)


ev = event


def click_id(i: int) -> str:
    return f"L{i % 2}.v{i}"


def phase1() -> list[Event]:
    """Clicks, a signup per visitor, a pending sale per click (click, visitor and ledger state)."""
    out = []
    for i in range(VISITORS):
        v, at = f"v{i}", T0 + timedelta(minutes=i)
        out.append(ev(EventType.CLICK, at, v, click_id=click_id(i), link_id=f"L{i % 2}"))
        out.append(ev(EventType.HIT_GOAL, at + timedelta(minutes=5), v, goal_ids=("signup",)))
        out.append(
            ev(
                EventType.POSTBACK,
                at + timedelta(hours=1),
                "",
                click_id=click_id(i),
                transaction_id=f"TX{i}",
                goal_ids=("sale",),
                revenue=Decimal(10 + i),
                status="pending",
            )
        )
    return out


def phase(n: int) -> list[Event]:
    """Events that mean something else without the earlier runs' state: the sale approved (ledger), a
    new sale naming the old click (click state), a goal hit by the clicking visitor (visitor state), the
    signup again (ledger: once per visitor and goal)."""
    out = []
    for i in range(VISITORS):
        v, at = f"v{i}", T0 + timedelta(hours=n, minutes=i)
        pb = dict(click_id=click_id(i), goal_ids=("sale",), revenue=Decimal(20 + i))
        out.append(ev(EventType.POSTBACK, at, "", transaction_id=f"TX{i}", status="approved", **pb))
        out.append(ev(EventType.POSTBACK, at, "", transaction_id=f"TX{i}-{n}", status="approved", **pb))
        out.append(ev(EventType.HIT_GOAL, at + timedelta(minutes=1), v, goal_ids=(f"goal{n}",)))
        out.append(ev(EventType.HIT_GOAL, at + timedelta(minutes=2), v, goal_ids=("signup",)))
    return out


FIELDS = (
    "event_id",
    "visitor_id",
    "revenue",
    "status",
    "is_deleted",
    "events_merged",
    "attribution_method",
    "attributed_click_id",
    "attributed_touch_id",
)


def final(rows: Sequence[Conversion]) -> dict[tuple[str, str], tuple]:
    """The latest version of every conversion (what the sink keeps), without the version number (it
    depends on the order in which the stages see the events, the rest does not)."""
    kept: dict[tuple[str, str], Conversion] = {}
    for r in rows:
        k = (r.goal_id, r.conversion_key)
        if k not in kept or r.version >= kept[k].version:
            kept[k] = r
    return {k: tuple(getattr(c, f) for f in FIELDS) for k, c in kept.items()}


def changed(before: dict, after: dict) -> dict:
    return {k: v for k, v in after.items() if before.get(k) != v}


def oracle(*phases: list[Event]) -> dict[tuple[str, str], dict[str, Any]]:
    pipeline = ConversionPipeline()
    rows: list[Conversion] = []
    for events in phases:
        rows.extend(pipeline.process_events(events).batch.conversions)
        pipeline.commit()
    return final(rows)


async def changelog_ends(bootstrap: str, app: Any) -> dict[TP, int | None]:
    """Last offset of every table changelog partition (None: empty)."""
    tps = [
        TopicPartition(table.changelog_topic.get_topic_name(), p)
        for table in app.tables.values()
        for p in range(PARTITIONS)
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {TP(tp.topic, tp.partition): (end - 1 if end else None) for tp, end in ends.items()}


def persisted(app: Any) -> dict[TP, int | None]:
    """The changelog offset each table's RocksDB partition database says it holds."""
    out = {}
    for table in app.tables.values():
        topic = table.changelog_topic.get_topic_name()
        for p in range(PARTITIONS):
            out[TP(topic, p)] = table.data.persisted_offset(TP(topic, p))
    return out


def keys_by_partition(app: Any) -> dict[str, dict[int, list[str]]]:
    """Per table, per RocksDB partition database: the state keys in it."""
    out: dict[str, dict[int, list[str]]] = {}
    for name, table in app.tables.items():
        store = table.data
        assert isinstance(store, RocksDBStore)
        out[name] = {
            p: [k.decode() for k in db.keys() if k != store.offset_key] for p, db in store._dbs.items()
        }
    return out


async def run_once(
    bootstrap: str, names: TopologyNames, datadir: Path, events: list[Event], expected: dict
) -> tuple[dict, dict[TP, int | None], dict[TP, int | None], dict[str, dict[int, list[str]]]]:
    """Run the app until its conversions include ``expected`` and its databases hold the changelogs."""
    rows: list[Conversion] = []

    async def writer(batch: ProcessedBatch, token: str) -> None:
        rows.extend(batch.conversions)

    app = build_faust_app(
        app_id=names.app_id,
        broker=f"kafka://{bootstrap}",
        topic=names.events,
        partitions=PARTITIONS,
        writer=writer,
        batch_max=50,
        batch_within_s=0.2,
        store="rocksdb://",
        broker_options=faust_test_options(datadir),
    )
    await asyncio.wait_for(app.start(), 60)
    try:
        await produce_events(bootstrap, names.events, events, PARTITIONS, per_record=3)
        deadline = time.monotonic() + 120
        seen = final(rows)
        while time.monotonic() < deadline and any(seen.get(k) != v for k, v in expected.items()):
            await asyncio.sleep(0.5)
            seen = final(rows)
        # the state writes follow the rows: wait until every changelog record is in its database
        ends, held = await changelog_ends(bootstrap, app), persisted(app)
        while time.monotonic() < deadline and held != ends:
            await asyncio.sleep(0.5)
            ends, held = await changelog_ends(bootstrap, app), persisted(app)
        keys = keys_by_partition(app)
    finally:
        await app.stop()
    return seen, ends, held, keys


async def test_rocksdb_state_survives_restart_and_recovers_from_changelog(
    kafka_bootstrap, unique_name, tmp_path
):
    names = TopologyNames(unique_name("events"), unique_name("app"))
    await create_topics(kafka_bootstrap, names.all(), PARTITIONS)

    p1, p2, p3 = phase1(), phase(2), phase(3)
    want1, want2, want3 = oracle(p1), oracle(p1, p2), oracle(p1, p2, p3)
    # without the earlier state the later phases come out differently: the test can fail
    for earlier, later, want in ((p1, p2, want2), ((*p1, *p2), p3, want3)):
        stateless = {**oracle(list(earlier)), **oracle(later)}
        assert stateless != want
    by_click = FIELDS.index("attributed_click_id")
    assert want2[("goal2", "visitor:v0")][by_click] == click_id(0)
    assert want2[("sale", "tx:TX1-2")][by_click] == click_id(1)

    first, second = tmp_path / "worker-a", tmp_path / "worker-b"
    runs = [(first, p1, want1, {}), (first, p2, want2, want1), (second, p3, want3, want2)]
    for n, (datadir, events, want, before) in enumerate(runs, 1):
        # run 2: state read back from the same databases (their offsets leave nothing to recover);
        # run 3: a new data dir, filled by Faust's recovery from the changelogs
        expected = changed(before, want)
        seen, ends, held, keys = await run_once(kafka_bootstrap, names, datadir, events, expected)
        assert {k: seen.get(k) for k in expected} == expected, f"run {n}"
        assert {k: v for k, v in seen.items() if want.get(k) != v} == {}, f"run {n}"
        # every database holds exactly the changelog up to its last record, keys in their own partition
        assert held == ends, f"run {n}"
        for table in ("visitor-state", "click-state", "conversion-state"):
            assert all(ends[TP(f"{names.app_id}-{table}-changelog", p)] for p in range(PARTITIONS))
            assert sum(map(len, keys[table].values())) > 0, (n, table)
        for table, dbs in keys.items():
            for part, ks in dbs.items():
                assert all(partition_for(k, PARTITIONS) == part for k in ks), (n, table, part)
    assert list(first.rglob("*.db")) and list(second.rglob("*.db"))
