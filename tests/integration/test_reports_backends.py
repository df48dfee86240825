"""Reports on one scenario, from a ClickHouse server and from the embedded chdb store: the expected
numbers, the same answers from both, reversed conversions counted nowhere, and replaying the same
batches (same dedup tokens) leaving every report unchanged."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pyarrow as pa
import pytest

from schemas.events import Event, EventType, ExperimentVariation, Segment
from schemas.reports import ConversionAnalyticsQuery, ExperimentReportQuery, TopEventsQuery
from schemas.rows import Conversion, ExposureRow, ProcessedBatch
from sinks import report_counters, reports
from sinks.backend import ClickHouseBackend
from sinks.chdb_backend import ChdbBackend
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.server_backend import ServerBackend

P = "p"
FROM, TO = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
NOW = datetime(2026, 1, 20, tzinfo=UTC)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, 10, hour, minute, tzinfo=UTC)


def event(eid: str, type_: EventType, visitor: str, when: datetime, **kw: Any) -> Event:
    return Event(
        event_id=eid,
        type=type_,
        received_at=when,
        occurred_at=when,
        account_id="a",
        project_id=P,
        visitor_id=visitor,
        source_format="test",
        **kw,
    )


def click(eid: str, visitor: str, link: str, campaign: str, when: datetime) -> Event:
    return event(
        eid,
        EventType.CLICK,
        visitor,
        when,
        link_id=link,
        click_id=f"ck-{eid}",
        segment=Segment(campaign=campaign),
    )


def push_open(eid: str, visitor: str, push: str) -> Event:
    return event(eid, EventType.PUSH_OPEN, visitor, at(9), push_hash=push)


def view(eid: str, visitor: str, variation: str) -> Event:
    exp = (ExperimentVariation(experiment_id="E1", variation_id=variation),)
    return event(eid, EventType.VIEW_EXP, visitor, at(8), experiments=exp)


def conversion(
    goal: str,
    key: str,
    visitor: str,
    revenue: str,
    version: int,
    *,
    link: str = "",
    campaign: str = "",
    push: str = "",
    ttc_s: int | None = None,
    deleted: bool = False,
) -> Conversion:
    when = at(12)
    return Conversion(
        project_id=P,
        goal_id=goal,
        conversion_key=key,
        account_id="a",
        visitor_id=visitor,
        event_id=f"ev-{key}",
        event_type="transaction",
        occurred_at=when,
        received_at=when,
        revenue=Decimal(revenue),
        currency="EUR",
        products_count=0,
        transaction_id="",
        experiment_ids=(),
        variation_ids=(),
        version=version,
        status="rejected" if deleted else "",
        status_class="reversed" if deleted else "normal",
        is_deleted=deleted,
        attributed_link_id=link,
        attributed_campaign=campaign,
        attributed_push_hash=push,
        attributed_at=None if ttc_s is None else when - timedelta(seconds=ttc_s),
        time_to_convert_ms=None if ttc_s is None else ttc_s * 1000,
    )


EVENTS = (
    click("c1", "v1", "L1", "spring", at(9)),
    click("c2", "v2", "L1", "spring", at(9, 5)),
    click("c3", "v3", "L1", "spring", at(9, 10)),
    click("c4", "v4", "L2", "autumn", at(9, 15)),
    push_open("o1", "v5", "H1"),
    push_open("o2", "v6", "H1"),
    push_open("o3", "v7", "H2"),
    view("x1", "v1", "A"),
    view("x2", "v2", "A"),
    view("x3", "v3", "B"),
    view("x4", "v4", "B"),
)
T2 = dict(goal="purchase", key="tx:T2", visitor="v3", revenue="50", link="L1", campaign="spring", ttc_s=300)
CONVERSIONS = (
    conversion("purchase", "tx:T1", "v1", "100", 1, link="L1", campaign="spring", ttc_s=60),
    conversion("signup", "visitor:v2", "v2", "0", 2, link="L1", campaign="spring", ttc_s=120),
    conversion(version=3, **T2),  # type: ignore[arg-type]
    conversion("purchase", "tx:T3", "v4", "20", 4, link="L2", campaign="autumn", ttc_s=10),
    conversion("app_launch", "ev:o1", "v5", "0", 5, push="H1"),
    conversion("purchase", "tx:T4", "v6", "5", 6, push="H1"),
)
EXPOSURES = tuple(
    ExposureRow(
        project_id=P,
        account_id="a",
        experiment_id="E1",
        variation_id=var,
        visitor_id=v,
        first_seen_at=at(8),
        version=1,
    )
    for v, var in (("v1", "A"), ("v2", "A"), ("v3", "B"), ("v4", "B"))
)
BATCHES = [
    (ProcessedBatch(events=EVENTS, conversions=CONVERSIONS, exposures=EXPOSURES), "events/0/0-10"),
    # a later status reverses T2: the new version replaces it and it counts nowhere
    (ProcessedBatch(conversions=(conversion(version=7, deleted=True, **T2),)), "events/0/11-11"),  # type: ignore[arg-type]
]


def top(**filters: str) -> TopEventsQuery:
    return TopEventsQuery(project=P, from_=FROM, to=TO, **filters)


def all_reports(b: ClickHouseBackend) -> dict[str, Any]:
    out = {
        name: reports.top_events(b, top(**f)).model_dump()
        for name, f in {
            "project": {},
            "link": {"link": "L1"},
            "push": {"push": "H1"},
            "campaign": {"campaign": "spring"},
            "variation A": {"experiment": "E1", "variation": "A"},
            "variation B": {"experiment": "E1", "variation": "B"},
            "nothing": {"link": "nope"},
        }.items()
    }
    out["analytics"] = reports.conversion_analytics(
        b, ConversionAnalyticsQuery(link_id="L1"), NOW
    ).model_dump()
    out["experiment"] = reports.experiment_report(
        b, ExperimentReportQuery(experiment="E1", project=P, from_=FROM, to=TO)
    ).model_dump()
    out["experiment purchase"] = reports.experiment_report(
        b, ExperimentReportQuery(experiment="E1", project=P, from_=FROM, to=TO, goal="purchase", baseline="B")
    ).model_dump()
    return out


def rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in report["rows"]]


class AsOfItsSchema:
    """A backend written to as the release of an older schema wrote: only the columns its tables have
    (today's sink also writes columns added since, e.g. ``attributed_external_click_id``, 0024)."""

    def __init__(self, backend: ClickHouseBackend) -> None:
        self.backend = backend

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str | None = None) -> None:
        sql = "SELECT name FROM system.columns WHERE database = {db:String} AND table = {t:String}"
        have = {r[0] for r in self.backend.query(sql, {"db": self.backend.database, "t": table})}
        kept = data.select([n for n in data.column_names if n in have])
        self.backend.insert_arrow(table, kept, dedup_token=dedup_token)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


def write(b: ClickHouseBackend) -> None:
    sink = ClickHouseSink(b)
    for batch, token in BATCHES:
        sink.write_batch(batch, token)


@pytest.fixture
def server(clickhouse_server, ch_database) -> Iterator[ServerBackend]:
    with ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database) as b:
        migrate(b)
        b.command("SYSTEM STOP MERGES conversions")  # keep the replaced versions stored: FINAL must cope
        b.command("SYSTEM STOP MERGES report_reach_daily")  # parts stay visible: a replay must add none
        b.command("SYSTEM STOP MERGES report_visitor_days")
        yield b


@pytest.fixture
def embedded(chdb_path) -> Iterator[ChdbBackend]:
    with ChdbBackend(str(chdb_path), f"reports_{uuid.uuid4().hex}") as b:
        migrate(b)
        yield b


def check_expected(got: dict[str, Any]) -> None:
    project = got["project"]
    assert (project["visitors"], project["rate_base"], project["rate_base_count"]) == (7, "visitors", 7)
    # goal, conversions, converters, rate, revenue; T2 was reversed: not counted
    assert rows(project) == [
        ("purchase", 3, 3, 0.428571, 125.0),
        ("app_launch", 1, 1, 0.142857, 0.0),
        ("signup", 1, 1, 0.142857, 0.0),
    ]
    link = got["link"]  # PVTLNK: conversions / clicks
    assert (link["rate_base"], link["rate_base_count"], link["filter"]) == ("clicks", 3, {"link": "L1"})
    assert rows(link) == [("purchase", 1, 1, 0.333333, 100.0), ("signup", 1, 1, 0.333333, 0.0)]
    push = got["push"]  # Pushwoosh: conversions / push opens
    assert (push["rate_base"], push["rate_base_count"]) == ("push_opens", 2)
    assert rows(push) == [("purchase", 1, 1, 0.5, 5.0), ("app_launch", 1, 1, 0.5, 0.0)]
    campaign = got["campaign"]
    assert (campaign["rate_base"], campaign["rate_base_count"]) == ("campaign_visitors", 3)
    assert rows(campaign) == [("purchase", 1, 1, 0.333333, 100.0), ("signup", 1, 1, 0.333333, 0.0)]
    a, b = got["variation A"], got["variation B"]  # Convert: converting visitors / visitors who saw it
    assert (a["rate_base"], a["rate_base_count"], b["rate_base_count"]) == ("exposed_visitors", 2, 2)
    assert rows(a) == [("purchase", 1, 1, 0.5, 100.0), ("signup", 1, 1, 0.5, 0.0)]
    assert rows(b) == [("purchase", 1, 1, 0.5, 20.0)]
    assert rows(got["nothing"]) == [] and got["nothing"]["rate_base_count"] == 0

    analytics = got["analytics"]
    assert {
        k: analytics[k] for k in ("clicks", "conversions", "conversion_rate", "total_value", "average_value")
    } == {
        "clicks": 3,
        "conversions": 2,
        "conversion_rate": 0.666667,
        "total_value": 100.0,
        "average_value": 50.0,
    }
    assert (analytics["time_to_convert_mean_s"], analytics["time_to_convert_median_s"]) == (90.0, 90.0)
    assert rows(analytics) == [("purchase", 1, 100.0, 100.0), ("signup", 1, 0.0, 0.0)]

    exp = got["experiment"]
    assert exp["baseline"] == "A"
    half = 1.959963984540054 * math.sqrt(0.5 * 0.5 / 2)
    # variation, exposures, conversions, converters, rate, revenue, baseline?, difference, ci low, ci high
    assert rows(exp) == [
        ("A", 2, 2, 2, 1.0, 100.0, True, None, None, None),
        ("B", 2, 1, 1, 0.5, 20.0, False, -0.5, round(-0.5 - half, 6), round(-0.5 + half, 6)),
    ]
    purchase = got["experiment purchase"]  # only purchases; B as the baseline
    assert rows(purchase) == [
        ("A", 2, 1, 1, 0.5, 100.0, False, 0.0, round(-math.sqrt(2) * half, 6), round(math.sqrt(2) * half, 6)),
        ("B", 2, 1, 1, 0.5, 20.0, True, None, None, None),
    ]


def test_server_and_chdb_answer_the_same_reports_and_replays_change_nothing(
    server: ServerBackend, embedded: ChdbBackend
) -> None:
    write(server)
    write(embedded)
    from_server = all_reports(server)
    check_expected(from_server)
    assert all_reports(embedded) == from_server

    # the same batches again (a replayed Kafka range: same tokens), in order and the first alone again
    stored = "SELECT (SELECT count() FROM report_reach_daily), (SELECT count() FROM report_visitor_days)"
    aggregate_rows = server.query(stored)[0]
    assert all(aggregate_rows), aggregate_rows  # both aggregates hold this scenario
    for b in (server, embedded):
        write(b)
        ClickHouseSink(b).write_batch(*BATCHES[0])
        assert all_reports(b) == from_server
    # the dedup token also reached the aggregates through the materialized view: nothing stored twice
    assert server.query(stored)[0] == aggregate_rows


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (FROM, TO),  # whole days: all from the aggregates
        (at(9, 3), TO),  # starts inside a day
        (FROM, at(9, 7)),  # ends inside a day
        (at(9, 3), at(9, 12)),  # inside one day: all raw
        (at(9, 5), datetime(2026, 1, 11, 9, 5, tzinfo=UTC)),
    ],
)
def test_the_daily_aggregates_answer_what_the_raw_events_do(
    server: ServerBackend, start: datetime, end: datetime
) -> None:
    write(server)
    write(server)  # a replay
    for filters in ({}, {"link": "L1"}, {"push": "H1"}, {"campaign": "spring"}, {"campaign": "none"}):
        query = TopEventsQuery(project=P, from_=start, to=end, **filters)
        base = query.rate_base
        params: dict[str, Any] = {
            "project": P,
            "start": reports.ts(start),
            "end": reports.ts(end),
            **filters,
        }
        raw = [int(v) for v in server.query(reports.BASE_SQL[base], params)[0]]
        aggregated = [
            int(v)
            for v in server.query(
                reports.REACH_SQL[base], {**params, **reports.reach_params(base, query, start, end)}
            )[0]
        ]
        assert aggregated == raw, (filters, aggregated, raw)
    whole = reports.top_events(server, TopEventsQuery(project=P, from_=FROM, to=TO, link="L1"))
    assert (whole.visitors, whole.rate_base_count) == (3, 3)


@pytest.mark.parametrize("kind", ["server", "chdb"])
def test_upgrading_a_database_with_data_keeps_every_report(
    kind: str, server: ServerBackend, clickhouse_server, ch_database, chdb_path
) -> None:
    """A database at schema 21 (daily visitor sets, no visitor masks) holding the scenario, upgraded by
    ``migrate`` (0022 back-fills the masks, narrows the old view; 0023 adds the visitor hash; 0024 the
    external click id; 0026 the writers' counters, empty and not marked ready, so the exact reading
    answers; 0027 the bounds of the counters' marks), answers every report as a database created at the
    latest schema does — and keeps doing so for new events."""
    write(server)
    expected = all_reports(server)
    check_expected(expected)
    old: ClickHouseBackend = (
        ServerBackend(clickhouse_server.host, clickhouse_server.http_port, f"{ch_database}_old")
        if kind == "server"
        else ChdbBackend(str(chdb_path), f"upgrade_{uuid.uuid4().hex}")
    )
    with old:
        assert [m.version for m in migrate(old, upto=21)][-1] == 21
        write(cast(ClickHouseBackend, AsOfItsSchema(old)))
        assert old.query("SELECT count() FROM report_reach_daily WHERE kind = 'all'")[0][0] > 0
        assert [m.version for m in migrate(old)] == [22, 23, 24, 25, 26, 27]
        assert not report_counters.is_ready(old, P)  # no backfill of the counters: the exact path
        assert all_reports(old) == expected
        assert old.query("SELECT count() FROM report_visitor_days")[0][0] > 0
        # the old view no longer writes the visitor sets the masks replaced; its link/push sets stay
        kinds = "SELECT countIf(kind IN ('all', 'campaign')), countIf(kind = 'link') FROM report_reach_daily"
        assert old.query(kinds)[0][0] == 0 and old.query(kinds)[0][1] > 0
        # events after the upgrade reach the masks through the view, as in a new database
        for b in (server, old):
            ClickHouseSink(b).write_batch(
                ProcessedBatch(events=(view("late-1", "v-late", "A"),), session_ids=("",)), "after-upgrade"
            )
        assert all_reports(old) == all_reports(server) != expected
        old.command(f"DROP DATABASE {old.database}")
