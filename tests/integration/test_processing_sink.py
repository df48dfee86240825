"""Processing rows -> a real ClickHouse server -> the processing reports, replays included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from processors.pipeline import ConversionPipeline
from schemas.events import Event, EventType, ExperimentVariation
from schemas.reports import TopEventsQuery
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.processing_reports import processing_report
from sinks.reports import top_events
from sinks.server_backend import ServerBackend
from tests.scenario import event

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def ev(type_: EventType, at: datetime, visitor: str = "v1", **kw: Any) -> Event:
    return event(type_, at, visitor, **kw)


def test_rows_reports_and_replay(clickhouse_server, ch_database):
    backend = ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database)
    migrate(backend)
    assert migrate(backend) == []
    sink = ClickHouseSink(backend)
    pb = dict(visitor="", click_id="L1.c1", link_id="L1", goal_ids=("sale",), transaction_id="T1")
    events = [
        ev(EventType.VIEW_EXP, T0, experiments=(ExperimentVariation(experiment_id="E", variation_id="A"),)),
        ev(
            EventType.CLICK,
            T0 + timedelta(minutes=1),
            click_id="L1.c1",
            link_id="L1",
            external_click_id="TS-9",
        ),
        ev(EventType.CLICK, T0 + timedelta(minutes=10), click_id="L2.c2", link_id="L2"),
        ev(EventType.POSTBACK, T0 + timedelta(hours=1), revenue=Decimal("10"), status="pending", **pb),
        ev(EventType.POSTBACK, T0 + timedelta(hours=2), revenue=Decimal("25.5"), status="approved", **pb),
        ev(EventType.HIT_GOAL, T0 + timedelta(minutes=20), goal_ids=("signup",)),
        ev(EventType.POSTBACK, T0 + timedelta(hours=3), visitor="v1", goal_ids=("lead",), status="trash"),
    ]
    pipeline = ConversionPipeline()
    first = pipeline.process_records([])  # nothing in, nothing out
    assert first.batch.is_empty
    result = pipeline.process_events(events)
    sink.write_batch(result.batch, "t|0:0-6")
    sink.write_batch(result.batch, "t|0:0-6")  # a replay of the same range changes nothing
    period = (T0 - timedelta(days=1), T0 + timedelta(days=1))
    report = processing_report(backend, "p", *period)
    goals = {g.goal_id: g for g in report.goals}
    assert set(goals) == {"sale", "signup", "lead"}
    assert (goals["sale"].conversions, goals["sale"].revenue, goals["sale"].attributed) == (1, 25.5, 1)
    assert goals["sale"].avg_time_to_convert_s == 59 * 60
    assert (goals["signup"].conversions, goals["signup"].attributed) == (1, 1)
    assert (goals["lead"].conversions, goals["lead"].reversed) == (0, 1)
    credits = {(c.goal_id, c.model, c.dimension): c.credit for c in report.credits}
    assert credits[("sale", "last_click", "L1")] == 1.0
    assert credits[("signup", "last_click", "L2")] == 1.0
    assert credits[("signup", "linear", "L1")] == 0.5 and credits[("signup", "first_click", "L1")] == 1.0
    assert report.variations[0].exposures == 1
    assert report.variations[0].conversions == {"sale": 1, "signup": 1}
    assert report.sessions.sessions == 1 and report.sessions.events == 4
    top = top_events(backend, TopEventsQuery(project="p", **{"from": period[0], "to": period[1]}))
    assert [(r.goal_id, r.conversions, r.revenue) for r in top.rows] == [
        ("sale", 1, 25.5),
        ("signup", 1, 0.0),
    ]
    rows = backend.query(
        "SELECT goal_id, attributed_click_id, attributed_external_click_id "
        "FROM conversions FINAL ORDER BY goal_id"
    )
    # the traffic source's click id of the attributed click ("" for a click without one)
    assert rows == [("lead", "L2.c2", ""), ("sale", "L1.c1", "TS-9"), ("signup", "L2.c2", "")]
    rows = backend.query("SELECT count(), countIf(session_id != '') FROM events_raw FINAL")
    assert rows[0] == (7, 4)
    backend.close()
