"""The embedded runner keeps the Top-5 counters (issue 16 item 5; docs/decisions.md 150-153): a stream of a
week (visitors over several days, goal hits, transactions in two currencies, a duplicated transaction,
status changes and a reversal, late events) goes through `trackpipe run`'s app on real chdb and SQLite,
with a restart in the middle and a batch written and then replayed (its commit fails once); afterwards
the Top-5 of every whole-day period is answered from the counters and equals the exact reading.

Events are appended to the runner's local log as the edge's publisher does, with times over several days
(the edge stamps ``occurred_at`` with the time it received the event)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from schemas.envelope import encode_envelope
from schemas.events import Event, EventType
from schemas.reports import TopEventsQuery
from sinks import report_counters, reports
from trackpipe.embedded import RUNNER, build_embedded_app
from trackpipe.locallog import LocalLog
from trackpipe.settings import Settings

pytestmark = pytest.mark.integration

KEY = "counters-test-admin-key-0123456789abcdef"
P = "shop"
T0 = datetime(2026, 2, 2, tzinfo=UTC)  # a Monday
DAYS = 7
_ids = count()


def ev(type_: EventType, visitor: str, at: datetime, **kw: Any) -> Event:
    return Event(
        event_id=f"e{next(_ids)}",
        type=type_,
        received_at=at,
        occurred_at=at,
        account_id="acc",
        project_id=P,
        visitor_id=visitor,
        source_format="test",
        **kw,
    )


def day_batches() -> list[list[Event]]:
    """One list of events per day: views, goal hits, purchases (EUR and USD), a duplicate, statuses."""
    out = []
    for d in range(DAYS):
        t = T0 + timedelta(days=d, hours=9)
        events = []
        for i in range(12):
            v = f"v{(i * 3 + d * 5) % 23}"  # visitors come back on other days
            events.append(ev(EventType.VIEW_EXP, v, t + timedelta(minutes=i)))
            if (i + d) % 3 == 0:
                events.append(
                    ev(EventType.HIT_GOAL, v, t + timedelta(minutes=i, seconds=5), goal_ids=("signup",))
                )
            if (i + d) % 4 == 0:
                cur = "EUR" if i % 2 else "USD"
                events.append(
                    ev(
                        EventType.TRANSACTION,
                        v,
                        t + timedelta(minutes=i, seconds=9),
                        goal_ids=("purchase",),
                        revenue=Decimal(10 + i + d),
                        currency=cur,
                        transaction_id=f"o-{d}-{i}",
                    )
                )
        if d == 1:  # the same order sent again: one conversion
            events.append(
                ev(
                    EventType.TRANSACTION,
                    "v7",
                    t + timedelta(hours=2),
                    goal_ids=("purchase",),
                    revenue=Decimal(13),
                    currency="EUR",
                    transaction_id="o-1-3",
                )
            )
        if d == 3:  # an order of day 0 rejected (reversed), one of day 2 confirmed pending -> approved
            events.append(
                ev(
                    EventType.POSTBACK,
                    "v0",
                    t,
                    goal_ids=("purchase",),
                    transaction_id="o-0-0",
                    status="rejected",
                )
            )
            events.append(
                ev(
                    EventType.POSTBACK,
                    "v1",
                    t,
                    goal_ids=("lead",),
                    transaction_id="l-1",
                    status="pending",
                    revenue=Decimal(5),
                    currency="USD",
                )
            )
        if d == 4:
            events.append(
                ev(
                    EventType.POSTBACK,
                    "v1",
                    t,
                    goal_ids=("lead",),
                    transaction_id="l-1",
                    status="approved",
                    revenue=Decimal(8),
                    currency="USD",
                )
            )
            # late events: yesterday evening, a visitor not seen yesterday and a goal hit
            late = T0 + timedelta(days=d - 1, hours=22)
            events.append(ev(EventType.VIEW_EXP, "late-1", late))
            events.append(ev(EventType.HIT_GOAL, "late-1", late, goal_ids=("signup",)))
        if d == 5:  # the reversed order approved again (a chargeback withdrawn)
            events.append(
                ev(
                    EventType.POSTBACK,
                    "v0",
                    t,
                    goal_ids=("purchase",),
                    transaction_id="o-0-0",
                    status="approved",
                )
            )
        out.append(events)
    return out


AUTH = {"Authorization": f"Bearer {KEY}"}


def settings(tmp: Path, **kw: Any) -> Settings:
    return Settings(data_dir=tmp / "data", admin_key=KEY, **kw)  # type: ignore[arg-type]


async def wait_for(predicate: Any, what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)  # polling interval; the condition decides
    raise AssertionError(f"{what}: not reached in {within}s")


async def feed(app: Any, events: list[Event]) -> None:
    """Append as the edge does (a few events per record) and wait until the runner committed them."""
    runner = app[RUNNER]
    records = [(0, encode_envelope(events[i : i + 3])) for i in range(0, len(events), 3)]
    runner.log.append_many(records)
    runner.appended.set()
    end = runner.log.end_offset
    await wait_for(lambda: runner.position >= end, "the runner committed the records")


def backend_of(app: Any) -> Any:
    return app[RUNNER].port.sink.backend


def both_readings(b: Any, start: datetime, end: datetime, now: datetime) -> tuple[Any, Any]:
    q = TopEventsQuery(project=P, from_=start, to=end, limit=5)
    return reports.top_events(b, q, now), reports.top_events(b, q, now, use_counters=False)


async def test_the_embedded_runner_answers_every_whole_day_period_from_its_counters(tmp_path, monkeypatch):
    batches = day_batches()
    app = build_embedded_app(settings(tmp_path))
    async with TestClient(TestServer(app)):
        for events in batches[:3]:
            await feed(app, events)
    # a restart in the middle: the counting state comes back from SQLite
    app = build_embedded_app(settings(tmp_path))
    async with TestClient(TestServer(app)) as client:
        await feed(app, batches[3])
        # a batch written, then its commit refused once: it is processed and written again
        state = app[RUNNER].batches.port.pipeline.state
        conn, refused = state.conn, []

        class RefusingCommitOnce:
            def __getattr__(self, name: str) -> Any:
                return getattr(conn, name)

            def commit(self) -> None:
                if not refused:
                    refused.append(True)
                    raise sqlite3.OperationalError("database or disk is full")
                conn.commit()

        monkeypatch.setattr(state, "conn", RefusingCommitOnce())
        await feed(app, batches[4])
        assert refused
        monkeypatch.undo()
        for events in batches[5:]:
            await feed(app, events)
        b = backend_of(app)
        assert report_counters.is_ready(b, P)
        assert int(b.query("SELECT count() FROM report_visit_pairs")[0][0]) > 0
        now = T0 + timedelta(days=DAYS + 3)
        first = reports.TOP5_FROM_COUNTERS[P]
        compared = 0
        for a in range(-1, DAYS + 1):
            for z in range(a + 1, DAYS + 2):
                start, end = T0 + timedelta(days=a), T0 + timedelta(days=z)
                fast, exact = both_readings(b, start, end, now)
                assert fast == exact, (start, end)
                compared += 1
        assert reports.TOP5_FROM_COUNTERS[P] - first == compared  # every one from the counters
        whole, _ = both_readings(b, T0, T0 + timedelta(days=DAYS), now)
        goals = {r.goal_id: r for r in whole.rows}
        assert set(goals) == {"signup", "purchase", "lead"} and goals["lead"].conversions == 1
        assert whole.visitors == 24  # 23 regulars and the late one
        # a period not of whole days is read exactly
        first = reports.TOP5_FROM_COUNTERS[P]
        partial, exact = both_readings(b, T0 + timedelta(hours=3), T0 + timedelta(days=2), now)
        assert partial == exact and reports.TOP5_FROM_COUNTERS[P] == first

        # the edge's Top-5 answers the same, and its /metrics says how it was read
        async def readings() -> dict[str, float]:
            text = await (await client.get("/metrics", headers=AUTH)).text()
            return {
                r: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                for r in ("counters", "exact")
                if line.startswith(f'trackpipe_report_top5_total{{reading="{r}"}}')
            }

        before = await readings()
        period = {"from": T0.isoformat(), "to": (T0 + timedelta(days=DAYS)).isoformat()}
        resp = await client.get("/api/v1/reports/top-events", params={"project": P, **period}, headers=AUTH)
        assert resp.status == 200, await resp.text()
        assert {r["goal_id"]: r["conversions"] for r in (await resp.json())["rows"]} == {
            g: r.conversions for g, r in goals.items()
        }
        after = await readings()
        assert after["counters"] == before["counters"] + 1 and after["exact"] == before["exact"]


async def test_a_database_with_data_keeps_the_exact_reading_and_a_change_withdraws_the_marks(tmp_path):
    batches = day_batches()
    # counted from its start with a horizon of 400 days: marked
    app = build_embedded_app(settings(tmp_path))
    async with TestClient(TestServer(app)):
        await feed(app, batches[0])
        assert report_counters.is_ready(backend_of(app), P)
    # another horizon: the marks are withdrawn, and the runner counts no more in this database
    app = build_embedded_app(settings(tmp_path, report_counter_days=30))
    async with TestClient(TestServer(app)):
        b = backend_of(app)
        assert not report_counters.is_ready(b, P)
        before = int(b.query("SELECT count() FROM report_visit_pairs")[0][0])
        await feed(app, batches[1])
        assert int(b.query("SELECT count() FROM report_visit_pairs")[0][0]) == before
        now = T0 + timedelta(days=DAYS)
        first = reports.TOP5_FROM_COUNTERS[P]
        fast, exact = both_readings(b, T0, T0 + timedelta(days=2), now)
        assert fast == exact and reports.TOP5_FROM_COUNTERS[P] == first


async def test_counting_turned_on_in_a_database_with_data_stays_off(tmp_path):
    batches = day_batches()
    app = build_embedded_app(settings(tmp_path, report_counter_days=0))
    async with TestClient(TestServer(app)):
        await feed(app, batches[0])
    app = build_embedded_app(settings(tmp_path))  # counting on, but rows were stored without it
    async with TestClient(TestServer(app)):
        await feed(app, batches[1])
        b = backend_of(app)
        assert not report_counters.is_ready(b, P)
        assert int(b.query("SELECT count() FROM report_visit_pairs")[0][0]) == 0


async def test_a_batch_lost_before_its_commit_leaves_no_stale_counter(tmp_path, monkeypatch):
    """A crash between a batch's write and its commit; at the next start the log holds more records, so
    the batch is replayed cut otherwise and does not touch every counter the lost one wrote: a goal day of
    an order the replay sees reversed only, a visitor's pair the late event splits. Those are written
    again with their committed values (decision 153)."""
    d0, d1, d2 = (T0 + timedelta(days=n, hours=10) for n in range(3))
    committed = [
        ev(EventType.VIEW_EXP, "a", d0),
        ev(
            EventType.TRANSACTION,
            "a",
            d0,
            goal_ids=("purchase",),
            revenue=Decimal(7),
            currency="EUR",
            transaction_id="o1",
        ),
    ]
    lost = [
        ev(EventType.VIEW_EXP, "a", d2),
        ev(
            EventType.TRANSACTION,
            "b",
            d2,
            goal_ids=("purchase",),
            revenue=Decimal(9),
            currency="EUR",
            transaction_id="o2",
        ),
    ]
    later = [
        ev(
            EventType.POSTBACK,
            "b",
            d2 + timedelta(hours=1),
            goal_ids=("purchase",),
            transaction_id="o2",
            status="rejected",
        ),
        ev(EventType.VIEW_EXP, "a", d1),  # late: a's day 1, between days 0 and 2
    ]
    app = build_embedded_app(settings(tmp_path))
    async with TestClient(TestServer(app)):
        await feed(app, committed)
        runner = app[RUNNER]
        state = runner.batches.port.pipeline.state
        conn, refused = state.conn, []

        class RefusingCommit:
            def __getattr__(self, name: str) -> Any:
                return getattr(conn, name)

            def commit(self) -> None:
                refused.append(True)
                raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(state, "conn", RefusingCommit())
        runner.log.append_many([(0, encode_envelope(lost))])
        runner.appended.set()
        await wait_for(lambda: bool(refused), "the lost batch was written, its commit refused")
        b = backend_of(app)
        assert int(
            b.query("SELECT count() FROM report_goal_days WHERE day = {d:Date}", {"d": d2.date()})[0][0]
        )
        await runner.close(grace_s=0.1)  # the process dies: the batch is abandoned uncommitted
    monkeypatch.undo()
    log_ = LocalLog(tmp_path / "data" / "log")
    log_.append_many([(0, encode_envelope(later))])  # more records by the next start
    log_.close()
    app = build_embedded_app(settings(tmp_path))
    async with TestClient(TestServer(app)):
        runner = app[RUNNER]
        await wait_for(lambda: runner.position >= runner.log.end_offset, "the replay committed")
        b = backend_of(app)
        now = T0 + timedelta(days=5)
        first = reports.TOP5_FROM_COUNTERS[P]
        compared = 0
        for a in range(0, 4):
            for z in range(a + 1, 5):
                fast, exact = both_readings(b, T0 + timedelta(days=a), T0 + timedelta(days=z), now)
                assert fast == exact, (a, z)
                compared += 1
        assert reports.TOP5_FROM_COUNTERS[P] - first == compared
        day2, _ = both_readings(b, T0 + timedelta(days=2), T0 + timedelta(days=3), now)
        assert day2.visitors == 2 and day2.rows == []  # b's order reversed
