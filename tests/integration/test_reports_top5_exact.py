"""The Top-5 report against the truth on seeded random data (issue 16 item 5): whatever the report's
fast paths (visitor day masks, reach aggregates, converters for the winners only), its numbers must be
those of the plain exact reading — distinct visitors of the raw events in the period, and per goal the
latest version of each conversion (``FINAL``) not reversed (``is_deleted = 0``) in the period.

Each seed makes events over three months and conversions with several versions each (status changes,
reversals, un-reversals, revenue and conversion-time changes moving a conversion across the period's
edges, a visitor corrected), written in several batches with merges stopped (every version stays stored:
``FINAL`` must cope), one batch replayed. The truth is computed here in Python and by the old exact
queries; periods cover whole days, partial days, one day, one month and a period across months. The
server and the embedded chdb store must give the same answers."""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from processors.counters import CounterWriter, utc_day
from schemas.events import Event, EventType, Segment
from schemas.reports import TopEventsQuery
from schemas.rows import Conversion, ProcessedBatch
from sinks import report_counters, reports
from sinks.backend import ClickHouseBackend
from sinks.chdb_backend import ChdbBackend
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.server_backend import ServerBackend

P = "p"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_S = 80 * 86400  # events and conversions over Jan 1 .. Mar 21
GOALS = [f"g{i}" for i in range(9)]
SEEDS = (1, 2, 3)
#: (from, to) of the compared reports: whole days, partial days, one day, across months, one month
PERIODS = [
    (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    (datetime(2026, 1, 5, 7, 30, tzinfo=UTC), datetime(2026, 2, 20, 13, 15, 0, 250000, tzinfo=UTC)),
    (datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    (datetime(2026, 1, 20, 23, 59, tzinfo=UTC), datetime(2026, 3, 3, 0, 1, tzinfo=UTC)),
    (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
    (datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
]


def _when(rng: random.Random) -> datetime:
    return T0 + timedelta(milliseconds=rng.randrange(SPAN_S * 1000))


def _event(eid: str, type_: EventType, visitor: str, when: datetime, campaign: str | None) -> Event:
    return Event(
        event_id=eid,
        type=type_,
        received_at=when,
        occurred_at=when,
        account_id="a",
        project_id=P,
        visitor_id=visitor,
        source_format="test",
        segment=Segment(campaign=campaign),
    )


def _conversion(goal: str, key: str, visitor: str, when: datetime, revenue: Decimal, version: int,
                deleted: bool) -> Conversion:  # fmt: skip
    return Conversion(
        project_id=P,
        goal_id=goal,
        conversion_key=key,
        account_id="a",
        visitor_id=visitor,
        event_id=f"ev-{key}-{version}",
        event_type="transaction",
        occurred_at=when,
        received_at=when,
        revenue=revenue,
        currency="EUR",
        products_count=0,
        transaction_id="",
        experiment_ids=(),
        variation_ids=(),
        version=version,
        status="rejected" if deleted else "approved",
        status_class="reversed" if deleted else "normal",
        is_deleted=deleted,
    )


def scenario(seed: int) -> tuple[list[tuple[ProcessedBatch, str]], list[Event], list[Conversion]]:
    """Batches to write (with their dedup tokens), the events, and every conversion version written."""
    rng = random.Random(seed)
    visitors = [f"v{i}" for i in range(rng.randrange(40, 90))]
    events = [
        _event(
            f"e{seed}-{i}",
            rng.choice((EventType.VIEW_EXP, EventType.HIT_GOAL, EventType.TRANSACTION)),
            rng.choice(visitors),
            _when(rng),
            rng.choice((None, "spring", "autumn")),
        )
        for i in range(rng.randrange(300, 700))
    ]
    versions: list[Conversion] = []
    version = 0
    for n in range(rng.randrange(150, 300)):
        goal = rng.choice(GOALS[: rng.randrange(3, len(GOALS) + 1)])  # uneven goals: ties and gaps
        key = f"tx:{n}" if rng.random() < 0.6 else f"visitor:{n}"
        visitor, when = rng.choice(visitors), _when(rng)
        revenue = Decimal(rng.randrange(0, 50000)) / 100
        deleted = False
        for _ in range(rng.choice((1, 1, 2, 3, 4))):
            version += rng.randrange(1, 4)
            versions.append(_conversion(goal, key, visitor, when, revenue, version, deleted))
            change = rng.random()
            if change < 0.35:
                deleted = not deleted  # reversed, or approved again
            elif change < 0.6:
                revenue = Decimal(rng.randrange(0, 50000)) / 100
            elif change < 0.8:
                when = when - timedelta(hours=rng.randrange(0, 24 * 20))  # an earlier event merged
            else:
                visitor = rng.choice(visitors)
    # versions are written in arrival order spread over batches: a later version is never written
    # before an earlier one of the same key, but the versions of one key land in different parts
    order = sorted(range(len(versions)), key=lambda i: versions[i].version)
    batches: list[tuple[ProcessedBatch, str]] = []
    cuts = sorted(rng.sample(range(1, len(order)), 4))
    ev_cuts = sorted(rng.sample(range(1, len(events)), 4))
    for b, (lo, hi, elo, ehi) in enumerate(
        zip([0, *cuts], [*cuts, len(order)], [0, *ev_cuts], [*ev_cuts, len(events)], strict=True)
    ):
        batch = ProcessedBatch(
            events=tuple(events[elo:ehi]), conversions=tuple(versions[i] for i in order[lo:hi])
        )
        batches.append((batch, f"events/0/{seed}-{b}"))
    batches.append(batches[1])  # a replayed Kafka range: the same batch, the same token
    return with_counters(batches, rng), events, versions


def _feed(writer: CounterWriter, items: list[Event | Conversion]) -> None:
    for item in items:
        if isinstance(item, Conversion):
            writer.conversion(item)
        else:
            writer.visit(item.project_id, item.visitor_id, utc_day(item.occurred_at))


def with_counters(
    batches: list[tuple[ProcessedBatch, str]], rng: random.Random
) -> list[tuple[ProcessedBatch, str]]:
    """The batches with the counters a writer emits after each (processors/counters.py, versioned by the
    offset of the batch's last input), written by the sink with the rows. Then a crashed writer: its
    state as of the end of batch 0 replays batches 1 and 2 cut differently (rows of lower and equal
    versions: the newer values already stored must win), and the replay of batch 1 with its token."""
    writer = CounterWriter("0")
    items = [[*b.events, *b.conversions] for b, _ in batches[:-1]]
    ends = [sum(len(x) for x in items[: i + 1]) - 1 for i in range(len(items))]
    out, snapshot = [], None
    for (batch, token), chunk, end in zip(batches[:-1], items, ends, strict=True):
        _feed(writer, chunk)
        out.append((batch.model_copy(update=_tuples(writer.rows(end))), token))
        if snapshot is None:
            snapshot = copy.deepcopy(writer)
    assert snapshot is not None
    for b in (1, 2):
        cut = rng.randrange(1, len(items[b]))
        for lo, hi in ((0, cut), (cut, len(items[b]))):
            _feed(snapshot, items[b][lo:hi])
            rows = _tuples(snapshot.rows(ends[b] - len(items[b]) + hi))
            out.append((ProcessedBatch(**rows), f"counters-replay/{b}/{lo}"))
    out.append(out[1])
    return out


def _tuples(rows: dict[str, list[Any]]) -> dict[str, tuple[Any, ...]]:
    return {kind: tuple(r) for kind, r in rows.items()}


def truth(events: list[Event], versions: list[Conversion], start: datetime, end: datetime,
          limit: int) -> tuple[int, list[tuple[str, int, int, float]]]:  # fmt: skip
    """(visitors, [(goal, conversions, converters, revenue)] of the Top-``limit``) computed in Python."""
    visitors = len({e.visitor_id for e in events if start <= e.occurred_at < end})
    latest: dict[tuple[str, str], Conversion] = {}
    for c in versions:
        k = (c.goal_id, c.conversion_key)
        if k not in latest or latest[k].version < c.version:
            latest[k] = c
    per_goal: dict[str, tuple[int, set[str], Decimal]] = {}
    for c in latest.values():
        if c.is_deleted or not start <= c.occurred_at < end:
            continue
        n, who, revenue = per_goal.get(c.goal_id, (0, set(), Decimal(0)))
        per_goal[c.goal_id] = (n + 1, who | {c.visitor_id}, revenue + c.revenue)
    ranked = sorted(per_goal.items(), key=lambda kv: (-kv[1][0], -kv[1][2], kv[0]))
    return visitors, [(g, n, len(who), float(r)) for g, (n, who, r) in ranked[:limit]]


#: The exact reading the report had before any aggregate: raw visitors, goals over ``conversions FINAL``.
OLD_VISITORS_SQL = reports.VISITORS_SQL
COUNTERS = ("report_goal_days", "report_goal_pairs", "report_visit_pairs")
OLD_GOALS_SQL = """
SELECT goal_id, count() AS conversions, uniqExact(visitor_id), toString(sum(revenue))
FROM conversions FINAL
WHERE project_id = {project:String} AND occurred_at >= {start:DateTime64(3, 'UTC')}
  AND occurred_at < {end:DateTime64(3, 'UTC')} AND is_deleted = 0
GROUP BY goal_id
"""


def old_exact(b: ClickHouseBackend, start: datetime, end: datetime, limit: int) -> tuple[int, list[Any]]:
    params = {"project": P, "start": reports.ts(start), "end": reports.ts(end)}
    visitors = int(b.query(OLD_VISITORS_SQL, params)[0][0])
    goals = [
        (str(g), int(n), int(u), float(Decimal(str(r)))) for g, n, u, r in b.query(OLD_GOALS_SQL, params)
    ]
    goals.sort(key=lambda r: (-r[1], -r[3], r[0]))
    return visitors, goals[:limit]


def from_report(b: ClickHouseBackend, start: datetime, end: datetime, limit: int) -> tuple[int, list[Any]]:
    report = reports.top_events(b, TopEventsQuery(project=P, from_=start, to=end, limit=limit))
    assert report.rate_base_count == report.visitors
    rows = [(r.goal_id, r.conversions, r.converters, r.revenue) for r in report.rows]
    for r in report.rows:
        assert r.conversion_rate == (round(r.converters / report.visitors, 6) if report.visitors else 0.0)
    return report.visitors, rows


@pytest.fixture
def server(clickhouse_server, ch_database) -> Iterator[ServerBackend]:
    with ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database) as b:
        migrate(b)
        for table in ("conversions", "events_raw", "report_reach_daily", "report_visitor_days", *COUNTERS):
            b.command(f"SYSTEM STOP MERGES {table}")  # every version and part stays: FINAL must cope
        yield b


@pytest.fixture
def embedded(chdb_path) -> Iterator[ChdbBackend]:
    with ChdbBackend(str(chdb_path), f"top5_{uuid.uuid4().hex}") as b:
        migrate(b)
        yield b


@pytest.mark.parametrize("seed", SEEDS)
def test_top5_equals_the_exact_reading_on_random_data(
    seed: int, server: ServerBackend, embedded: ChdbBackend
) -> None:
    batches, events, versions = scenario(seed)
    for b in (server, embedded):
        sink = ClickHouseSink(b)
        for batch, token in batches:
            sink.write_batch(batch, token)
        # counters not marked complete: the exact reading answers, also over whole days
        start, end = PERIODS[0]
        assert from_report(b, start, end, 5) == truth(events, versions, start, end, 5)
        report_counters.mark_ready(b, P)  # the writer counted the project from its first event
    assert all(int(server.query(f"SELECT count() FROM {t}")[0][0]) for t in COUNTERS)
    assert any(c.is_deleted for c in versions) and len(versions) > len(
        {(c.goal_id, c.conversion_key) for c in versions}
    )
    for start, end in PERIODS:
        fast = report_counters.reads_for("visitors", start, end) is not None
        assert fast == report_counters.whole_days(start, end)  # whole days: the counters answer
        assert report_counters.reads_for("campaign_visitors", start, end) is None  # not kept
        for limit in (5, 3):
            expected = truth(events, versions, start, end, limit)
            got = from_report(server, start, end, limit)
            assert got == expected, (seed, start, end, limit)
            assert old_exact(server, start, end, limit) == expected, (seed, start, end, limit)
            assert from_report(embedded, start, end, limit) == expected, (seed, start, end, limit)
