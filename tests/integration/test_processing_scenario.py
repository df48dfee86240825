"""The scripted processing scenario, hand-checked, through the embedded default and through Kafka + two
Faust workers (one SIGKILLed mid-stream and restarted): identical numbers per goal, model and variation.

Project ``shop`` (windows: 30 days, ``lead`` 7 days; model last click; time-decay half-life 7 days):

- alice sees E1/A, clicks L1 (day 1) and L2 (day 3), hits ``signup`` 30 min after the L2 click
  (path L1, L2). Postback hit=L1 click, tx A-100: pending 50 (twice: a duplicate), then approved 60.
- bob sees E1/B, clicks L1 (day 2, IP + UA); a PVTLNK order B-1 (30) without ids is auto-attributed
  to that click by IP + UA; the same order comes again as a Convert ``tr`` (one conversion). A ``vid``+page
  lead postback 5 days after his last activity (the ``tr``): visitor storage (4 days) expired, so it is
  unattributed although his click is inside the lead's 7-day window.
- carol clicks L2 (day 1): sale C-1 on day 36 is counted but outside the 30-day window; lead C-L on
  day 5 is attributed (7-day window), lead C-L2 on day 9 is not.
- dave clicks L1 (day 10): sale D-1 approved then rejected (reversed: gone); D-3 sent approved before
  its earlier pending (latest by occurrence wins: approved 20); D-2 arrives last (late), attributed.
- erin sees E1/B and hits ``signup`` without any click (unattributed); two sessions.
- frank's postback F-1 arrives before his click: counted at once, attributed when the click arrives.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from processors.pipeline import ConversionPipeline
from processors.runtime.faust.app import partition_for
from schemas.envelope import encode_envelope
from schemas.events import Event, EventType, ExperimentVariation
from schemas.rows import Conversion
from sinks.processing_reports import processing_report
from sinks.server_backend import ServerBackend
from tests.scenario import Proc, event, free_port, http, run_cli
from trackpipe.locallog import LocalLog

PARTITIONS = 4
D1 = datetime(2026, 4, 1, 10, tzinfo=UTC)
PERIOD = ("2026-03-01T00:00:00+00:00", "2026-06-01T00:00:00+00:00")
ENV = {
    "TRACKPIPE_PARTITIONS": str(PARTITIONS),
    "TRACKPIPE_ATTRIBUTION_GOAL_WINDOWS": "shop/lead=7",
    "TRACKPIPE_PROCESSING_LATENESS_HOURS": str(24 * 60),  # the scenario spans 36 days, sent at once
}


def day(n: float, hours: float = 0, minutes: float = 0) -> datetime:
    return D1 + timedelta(days=n - 1, hours=hours, minutes=minutes)


def ev(type_: EventType, at: datetime, visitor: str, project: str = "shop", **kw: Any) -> Event:
    return event(type_, at, visitor, project, **kw)


def view(at, visitor, var):
    exp = (ExperimentVariation(experiment_id="E1", variation_id=var),)
    return ev(EventType.VIEW_EXP, at, visitor, experiments=exp)


def click(at, visitor, link, cid, campaign=None, **kw):
    return ev(EventType.CLICK, at, visitor, click_id=cid, link_id=link, segment={"campaign": campaign}, **kw)


def pb(at, goal, *, visitor="", rev=None, **kw):
    return ev(EventType.POSTBACK, at, visitor, goal_ids=(goal,), revenue=rev, **kw)


def scenario() -> list[Event]:
    bob = {"client_ip": "10.0.0.2", "user_agent": "UA-bob"}
    a1 = {"click_id": "L1.a1", "link_id": "L1", "transaction_id": "A-100"}
    c1 = {"click_id": "L2.c1", "link_id": "L2"}
    d1 = {"click_id": "L1.d1", "link_id": "L1"}
    return [
        view(day(1, minutes=-5), "alice", "A"),
        click(day(1), "alice", "L1", "L1.a1", "spring"),
        click(day(1, hours=-2), "carol", "L2", "L2.c1", "brand"),
        view(day(2, hours=-1), "erin", "B"),
        ev(EventType.HIT_GOAL, day(2, hours=-1, minutes=10), "erin", goal_ids=("signup",)),
        view(day(2, hours=1), "erin", "B"),
        view(day(2, hours=2), "bob", "B"),
        click(day(2, hours=2, minutes=5), "bob", "L1", "L1.b1", "spring", **bob),
        click(day(3), "alice", "L2", "L2.a2", "brand"),
        ev(EventType.HIT_GOAL, day(3, minutes=30), "alice", goal_ids=("signup",)),
        pb(day(4, hours=2), "sale", rev=Decimal(30), transaction_id="B-1", **bob),
        ev(
            EventType.TRANSACTION,
            day(4, hours=2, minutes=1),
            "bob",
            goal_ids=("sale",),
            transaction_id="B-1",
            revenue=Decimal(30),
        ),
        pb(day(5), "sale", rev=Decimal(50), status="pending", **a1),
        pb(day(5, minutes=1), "sale", rev=Decimal(50), status="pending", **a1),  # duplicate
        pb(day(5, hours=-2), "lead", rev=Decimal(5), transaction_id="C-L", **c1),
        pb(day(6), "sale", rev=Decimal(60), status="approved", **a1),
        pb(day(9, hours=2), "lead", visitor="bob", rev=Decimal(5), link_id="L1", transaction_id="B-L"),
        pb(day(9, hours=-2), "lead", rev=Decimal(5), transaction_id="C-L2", **c1),
        click(day(10, hours=-1), "dave", "L1", "L1.d1"),
        pb(day(11, hours=-1), "sale", rev=Decimal(25), status="approved", transaction_id="D-1", **d1),
        pb(day(11, hours=1), "sale", rev=Decimal(20), status="approved", transaction_id="D-3", **d1),
        pb(day(11, minutes=30), "sale", rev=Decimal(18), status="pending", transaction_id="D-3", **d1),
        pb(day(12, hours=-1), "sale", status="rejected", transaction_id="D-1", **d1),
        pb(day(15), "sale", rev=Decimal(10), transaction_id="F-1", click_id="L2.f1", link_id="L2"),
        click(day(15, hours=-1), "frank", "L2", "L2.f1", "brand"),
        pb(day(36, hours=-2), "sale", rev=Decimal(40), transaction_id="C-1", **c1),
        pb(day(11), "sale", rev=Decimal(15), transaction_id="D-2", **d1),  # late
    ]


H = 3600.0
R = 2 ** (-48 / 168)  # time decay: alice's L1 click is 48 h older than her L2 click, half-life 168 h
DECAY_L1 = round(R / (1 + R), 6)
MODELS = ("first_click", "last_click", "linear", "position_based", "time_decay")


def _credits() -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    for m in (*MODELS, "backward"):
        out[("sale", m, "L1")] = 4  # A-100, B-1, D-2, D-3 (one touch each)
        out[("sale", m, "L2")] = 1  # F-1
        out[("sale", m, "")] = 1  # C-1, outside the window
        out[("lead", m, "L2")] = 1  # C-L
        out[("lead", m, "")] = 2  # B-L (storage expired), C-L2 (outside 7 days)
        out[("signup", m, "")] = 1  # erin
    signup = {
        "last_click": (0, 1),
        "first_click": (1, 0),
        "linear": (0.5, 0.5),
        "position_based": (0.5, 0.5),
        "time_decay": (DECAY_L1, round(1 - DECAY_L1, 6)),
        "backward": (1, 1),
    }
    for m, (l1, l2) in signup.items():
        for link, c in (("L1", l1), ("L2", l2)):
            out[("signup", m, link)] = c  # a touch of the path with no share under the model: 0
    return out


EXPECTED_GOALS = {
    # goal: conversions, converters, revenue, provisional, reversed, attributed,
    # avg / median time to convert (s)
    "lead": (3, 2, 15.0, 0, 0, 1, 4 * 86400.0, 4 * 86400.0),  # C-L: 4 days after carol's click
    # A-100 96 h, B-1 47 h 55 min, D-2 25 h, D-3 25.5 h (from its first event), F-1 1 h
    "sale": (6, 5, 175.0, 0, 1, 5, (96 + 47 + 55 / 60 + 25 + 25.5 + 1) * H / 5, 25.5 * H),
    "signup": (2, 2, 0.0, 0, 0, 1, 1800.0, 1800.0),
}
EXPECTED_VARIATIONS = {
    ("E1", "A"): (1, {"sale": 1, "signup": 1}),
    ("E1", "B"): (2, {"sale": 1, "lead": 1, "signup": 1}),
}
EXPECTED_SESSIONS = (9, 13, 6)


def check_report(report: dict[str, Any]) -> None:
    goals = {
        g["goal_id"]: (
            g["conversions"],
            g["converters"],
            g["revenue"],
            g["provisional"],
            g["reversed"],
            g["attributed"],
            g["avg_time_to_convert_s"],
            g["median_time_to_convert_s"],
        )
        for g in report["goals"]
    }
    assert goals == EXPECTED_GOALS
    credits = {(c["goal_id"], c["model"], c["dimension"]): c["credit"] for c in report["credits"]}
    assert credits == pytest.approx(_credits(), abs=1e-6)
    for goal in ("lead", "sale", "signup"):
        for m in MODELS:  # every model sums to the conversion count
            total = sum(v for (g, mm, _), v in credits.items() if g == goal and mm == m)
            assert math.isclose(total, EXPECTED_GOALS[goal][0], abs_tol=1e-9), (goal, m, total)
    revenue = {(c["goal_id"], c["model"], c["dimension"]): c["revenue"] for c in report["credits"]}
    assert revenue[("sale", "last_click", "L1")] == 60 + 30 + 15 + 20
    variations = {
        (v["experiment_id"], v["variation_id"]): (v["exposures"], v["conversions"])
        for v in report["variations"]
    }
    assert variations == EXPECTED_VARIATIONS
    s = report["sessions"]
    assert (s["sessions"], s["events"], s["visitors"]) == EXPECTED_SESSIONS


def test_expected_numbers_match_the_cores():
    """The hand-checked numbers, against the in-process pipeline (fast feedback for the two runs below)."""
    rows = ConversionPipeline().process_events(scenario()).batch.conversions
    kept = {(r.goal_id, r.conversion_key): r for r in rows}
    live = [r for r in kept.values() if not r.is_deleted]
    assert len(live) == 11 and sum(r.revenue for r in live) == 190
    ttc = sorted(r.time_to_convert_ms for r in live if r.goal_id == "sale" and r.time_to_convert_ms)
    assert ttc == [3600_000, 90000_000, 91800_000, 172500_000, 345600_000]


def records(events: list[Event], per_record: int = 3) -> list[tuple[int, bytes]]:
    """Envelope records by visitor partition, in scenario order within each partition."""
    by_part: dict[int, list[Event]] = {}
    for e in events:
        by_part.setdefault(partition_for(e.visitor_id, PARTITIONS), []).append(e)
    out = []
    for part, evs in sorted(by_part.items()):
        for i in range(0, len(evs), per_record):
            out.append((part, encode_envelope(evs[i : i + per_record])))
    return out


def report_cli(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    out = run_cli(
        ["report", "processing", "--project", "shop", "--from", PERIOD[0], "--to", PERIOD[1], *args], env, cwd
    )
    return json.loads(out)


def test_embedded_scenario(tmp_path):
    data = tmp_path / "data"
    log = LocalLog(data / "log")
    log.append_many(records(scenario()))
    sentinel = ev(
        EventType.HIT_GOAL, datetime.now(UTC), "sentinel-visitor", project="sentinel", goal_ids=("done",)
    )
    log.append_many([(0, encode_envelope([sentinel]))])  # processed after everything above
    log.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(["run", "--port", str(port), "--data-dir", str(data)], ENV, tmp_path / "run.log")
    try:
        proc.wait_healthy(base)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, body = http("GET", f"{base}/api/v1/reports/top-events?project=sentinel")
            if status == 200 and body["rows"]:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the scenario was never processed:\n{proc.tail()}")
    finally:
        assert proc.stop() == 0, proc.tail()
    check_report(report_cli(["--data-dir", str(data)], ENV, tmp_path))


def _bulk(project: str = "bulk", visitors: int = 60) -> list[Event]:
    """Filler traffic for the crash test: clicks, status changes, duplicates, goal hits."""
    out: list[Event] = []
    for i in range(visitors):
        v, at = f"b{i}", day(1, minutes=i)
        cid = f"L{i % 3}.bulk-{v}"
        out.append(ev(EventType.CLICK, at, v, project, click_id=cid, link_id=f"L{i % 3}"))
        if i % 2:
            out.append(
                ev(EventType.CLICK, at + timedelta(hours=1), v, project, click_id=cid + "x", link_id="L9")
            )
        tx = {"click_id": cid, "transaction_id": f"{project}-{i}", "goal_ids": ("sale",)}
        for n, status in enumerate(
            ("pending", "approved", "approved", "trash" if i % 7 == 0 else "approved")
        ):
            when = at + timedelta(hours=2 + n)
            out.append(ev(EventType.POSTBACK, when, "", project, status=status, revenue=Decimal(i + n), **tx))
        out.append(ev(EventType.HIT_GOAL, at + timedelta(hours=3), v, project, goal_ids=("signup",)))
    return out


def _summary(rows: list[Conversion]) -> dict[str, Any]:
    kept: dict[tuple[str, str], Conversion] = {}
    for r in rows:
        k = (r.goal_id, r.conversion_key)
        if k not in kept or r.version >= kept[k].version:
            kept[k] = r
    goals: dict[str, list[float]] = {}
    credits: dict[tuple[str, str, str], Decimal] = {}
    for r in kept.values():
        if r.is_deleted:
            continue
        g = goals.setdefault(r.goal_id, [0, 0.0])
        g[0] += 1
        g[1] += float(r.revenue)
        for c in r.credits:
            key = (r.goal_id, c.model, c.link_id)
            credits[key] = credits.get(key, Decimal(0)) + c.credit
    return {
        "goals": {k: (v[0], round(v[1], 4)) for k, v in goals.items()},
        "credits": {k: round(float(v), 6) for k, v in credits.items()},
    }


def _report_summary(backend: ServerBackend, project: str) -> dict[str, Any]:
    start, end = (datetime.fromisoformat(x) for x in PERIOD)
    rep = processing_report(backend, project, start, end)
    return {
        "goals": {g.goal_id: (g.conversions, g.revenue) for g in rep.goals if g.conversions},
        "credits": {(c.goal_id, c.model, c.dimension): c.credit for c in rep.credits},
    }


async def _group_lag(bootstrap: str, group: str, topics: list[str]) -> str:
    """Committed offset vs end offset per topic partition of the worker group (for failure messages)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        lines = []
        for tp in tps:
            meta = committed.get(tp)
            c = meta.offset if meta is not None else None
            lines.append(f"{tp.topic}[{tp.partition}] committed={c} end={ends[tp]}")
        return "\n".join(lines)
    finally:
        await consumer.stop()
        await admin.close()


async def _produce(bootstrap: str, topic: str, recs: list[tuple[int, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for part, payload in recs:
            await producer.send(topic, payload, partition=part)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.parametrize("kill", [False, True], ids=["two-workers", "worker-killed"])
async def test_distributed_scenario_with_a_worker_killed_mid_stream(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name, kill
):
    env = {
        **ENV,
        "TRACKPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRACKPIPE_KAFKA_TOPIC": unique_name("events"),
        "TRACKPIPE_CLICKHOUSE_HOST": clickhouse_server.host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(clickhouse_server.http_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": ch_database,
        "TRACKPIPE_WORKER_APP_ID": unique_name("worker"),
        "TRACKPIPE_WORKER_BATCH_MAX": "20",
        "TRACKPIPE_WORKER_BATCH_WITHIN_S": "0.2",
        "TRACKPIPE_WORKER_SESSION_TIMEOUT_S": "6",
        "TRACKPIPE_WORKER_HEARTBEAT_INTERVAL_S": "1",
    }
    topic = env["TRACKPIPE_KAFKA_TOPIC"]
    assert "created" in run_cli(["topics", "create"], env, tmp_path)
    run_cli(["migrate"], env, tmp_path)
    bulk = _bulk()
    expected_bulk = _summary(list(ConversionPipeline().process_events(bulk).batch.conversions))
    half = len(bulk) // 2
    await _produce(
        kafka_bootstrap, topic, records(scenario(), per_record=2) + records(bulk[:half], per_record=2)
    )

    backend = ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database)
    workers = [
        Proc(
            ["worker"],
            {**env, "TRACKPIPE_WORKER_METRICS_PORT": str(free_port())},
            tmp_path / f"worker{i}.log",
        )
        for i in (0, 1)
    ]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both workers share the partitions and rows are landing
            ready = all("[^Worker]: Ready" in w.log_path.read_text(errors="replace") for w in workers)
            if ready and backend.query("SELECT count() FROM events_raw")[0][0] > 0:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("no progress")
        if kill:
            workers[0].stop(signal.SIGKILL)
        await _produce(kafka_bootstrap, topic, records(bulk[half:], per_record=2))
        if kill:
            # in the killed worker's data directory: its lock went with the process, and the RocksDB state
            # it left (whatever a SIGKILL cut) is opened again and reconciled with the changelog
            restart_env = {
                **env,
                "TRACKPIPE_WORKER_METRICS_PORT": "0",
                "TRACKPIPE_DATA_DIR": str(tmp_path / "worker0-data"),
            }
            workers[0] = Proc(["worker"], restart_env, tmp_path / "worker0-restarted.log")
        deadline = time.monotonic() + 150
        got: Any = None
        while time.monotonic() < deadline:
            got = _report_summary(backend, "bulk")
            if got == expected_bulk:
                break
            await asyncio.sleep(1)
        assert got["goals"] == expected_bulk["goals"], (got["goals"], expected_bulk["goals"])
        diff = {
            k: (got["credits"].get(k), v)
            for k, v in expected_bulk["credits"].items()
            if got["credits"].get(k) != v
        }
        unattributed = backend.query(
            "SELECT conversion_key, events_merged, attribution_method, visitor_id FROM conversions FINAL"
            " WHERE project_id = 'bulk' AND is_deleted = 0 AND attributed_touch_id = ''"
        )
        assert got == expected_bulk, (diff, unattributed)
        start, end = (datetime.fromisoformat(x) for x in PERIOD)
        check_report(json.loads(processing_report(backend, "shop", start, end).model_dump_json()))
        for w in workers:  # no worker stopped itself (fail-stop) on the way
            assert w.p.poll() is None, f"{w.log_path.name} exited with {w.p.returncode}"
    except AssertionError as exc:
        for w in workers:  # the workers dump their stacks into their logs (faulthandler)
            if w.p.poll() is None:
                w.p.send_signal(signal.SIGUSR1)
        await asyncio.sleep(2)
        logs = "\n".join(f"--- {w.log_path.name} ---\n{w.tail(1500)}" for w in workers)
        app_id = env["TRACKPIPE_WORKER_APP_ID"]
        stages = [f"{app_id}-{s}" for s in ("visitor", "click", "fingerprint", "conversion")]
        lag = await _group_lag(kafka_bootstrap, app_id, [topic, *stages])
        raise AssertionError(f"{exc}\n{lag}\n{logs}") from None
    finally:
        for w in workers:
            w.stop()
        backend.close()
