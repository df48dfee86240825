"""The counting step against the truth computed from the rows it was fed: every whole-day period within the
horizon, after replays (a batch applied, discarded and applied again), restarts (a new step over the
committed state) and pruning (a horizon of days over a stream of weeks)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from processors.counting import _VISITOR, DAY_MS, CountingConfig, CountingStep, as_date
from processors.store import DictStore, StagedStore, expired_keys, unpack
from schemas.events import Event, EventType
from schemas.rows import Conversion

T0 = datetime(2026, 3, 1, tzinfo=UTC)
P = "p"


def _event(visitor: str, when: datetime, n: int) -> Event:
    return Event(
        event_id=f"e{n}",
        type=EventType.VIEW_EXP,
        received_at=when,
        occurred_at=when,
        account_id="a",
        project_id=P,
        visitor_id=visitor,
        source_format="test",
    )


def _conv(
    goal: str,
    key: str,
    visitor: str,
    when: datetime,
    revenue: Decimal,
    currency: str,
    version: int,
    deleted: bool,
) -> Conversion:
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
        revenue=revenue,
        currency=currency,
        products_count=0,
        transaction_id="",
        experiment_ids=(),
        variation_ids=(),
        version=version,
        is_deleted=deleted,
    )


def stream(seed: int, days: int, recent: bool = False) -> list[tuple[list[Event], list[Conversion]]]:
    """Batches in time order (events late by up to a day), conversions changing over their life (``recent``:
    only within a day, their time moving by hours)."""
    rng = random.Random(seed)
    visitors = [f"v{i}" for i in range(30)]
    batches = []
    live: dict[tuple[str, str], tuple[str, datetime, Decimal, str, int, bool]] = {}  # (key, goal) ->
    version = 0
    n_keys = 0
    for b in range(days * 3):
        now = T0 + timedelta(hours=8 * b)
        events = [
            _event(rng.choice(visitors), now - timedelta(hours=rng.randrange(0, 26)), b * 100 + i)
            for i in range(rng.randrange(0, 12))
        ]
        convs = []
        for _ in range(rng.randrange(0, 5)):
            known = sorted(k for k, v in live.items() if not recent or v[1] > now - timedelta(days=1))
            changes = []
            if known and rng.random() < 0.5:  # a change of a known conversion (one of its goals)
                key, goal = rng.choice(known)
                visitor, when, revenue, cur, _, deleted = live[(key, goal)]
                r = rng.random()
                if r < 0.35:
                    deleted = not deleted
                elif r < 0.6:
                    revenue = Decimal(rng.randrange(0, 9000)) / 100
                elif r < 0.8:
                    when -= timedelta(hours=rng.randrange(0, 5 if recent else 30))
                else:
                    visitor = rng.choice(visitors)
                changes.append((key, goal, visitor, when, revenue, cur, deleted))
            else:  # a new conversion, of one goal or of several
                key, visitor = f"tx{n_keys}", rng.choice(visitors)
                n_keys += 1
                when, cur = now - timedelta(hours=rng.randrange(0, 20)), rng.choice(("EUR", "USD"))
                revenue = Decimal(rng.randrange(0, 9000)) / 100
                for goal in rng.sample(("g1", "g2", "g3"), rng.choice((1, 1, 2, 3))):
                    changes.append((key, goal, visitor, when, revenue, cur, False))
            for key, goal, visitor, when, revenue, cur, deleted in changes:
                version += 1
                live[(key, goal)] = (visitor, when, revenue, cur, version, deleted)
                convs.append(_conv(goal, key, visitor, when, revenue, cur, version, deleted))
                if rng.random() < 0.1:  # the same row again (a redelivered row changes nothing)
                    convs.append(convs[-1])
        batches.append((events, convs))
    return batches


class Stored:
    """The counter tables as ClickHouse keeps them: highest version per key, the last of equal ones."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[Any, ...], tuple[int, Any]]] = {}
        self.ready: dict[str, bool] = {}

    def write(self, rows: Any) -> None:
        for kind in ("goal_days", "goal_pairs", "visit_pairs"):
            table = self.tables.setdefault(kind, {})
            for r in getattr(rows, kind):
                names = [f.name for f in fields(r)]
                values = {n: getattr(r, n) for n in names}
                value_names = {"conversions", "revenue", "with_revenue", "converters", "visitors", "version"}
                key = tuple(v for n, v in values.items() if n not in value_names)
                held = table.get(key)
                if held is None or held[0] <= r.version:
                    table[key] = (r.version, r)
        for m in rows.ready:
            self.ready[m.project_id] = m.ready

    def answer(self, a: date, b: date) -> tuple[int, dict[str, tuple[int, int, dict[str, Decimal]]]]:
        visitors = sum(
            r.visitors
            for _, r in self.tables.get("visit_pairs", {}).values()
            if a <= r.day < b and r.prev_day < a
        )
        goals: dict[str, tuple[int, int, dict[str, Decimal]]] = {}
        for _, r in self.tables.get("goal_days", {}).values():
            if a <= r.day < b:
                n, u, money = goals.get(r.goal_id, (0, 0, {}))
                if r.with_revenue:
                    money = {**money, r.currency: money.get(r.currency, Decimal(0)) + r.revenue}
                goals[r.goal_id] = (n + r.conversions, u, money)
        for _, r in self.tables.get("goal_pairs", {}).values():
            if a <= r.day < b and r.prev_day < a and r.goal_id in goals:
                n, u, money = goals[r.goal_id]
                goals[r.goal_id] = (n, u + r.converters, money)
        return visitors, {g: v for g, v in goals.items() if v[0]}


def truth(
    batches: list[tuple[list[Event], list[Conversion]]], a: date, b: date
) -> tuple[int, dict[str, Any]]:
    visitors = {e.visitor_id for events, _ in batches for e in events if a <= e.occurred_at.date() < b}
    latest: dict[tuple[str, str], Conversion] = {}
    for _, convs in batches:
        for c in convs:
            k = (c.goal_id, c.conversion_key)
            if k not in latest or latest[k].version <= c.version:
                latest[k] = c
    goals: dict[str, tuple[int, set[str], dict[str, Decimal]]] = {}
    for c in latest.values():
        if c.is_deleted or not a <= c.occurred_at.date() < b:
            continue
        n, who, money = goals.get(c.goal_id, (0, set(), {}))
        if c.revenue:
            money = {**money, c.currency: money.get(c.currency, Decimal(0)) + c.revenue}
        goals[c.goal_id] = (n + 1, who | {c.visitor_id}, money)
    return len(visitors), {g: (n, len(who), money) for g, (n, who, money) in goals.items()}


def run(
    batches: list[tuple[list[Event], list[Conversion]]], config: CountingConfig, seed: int
) -> tuple[Stored, DictStore]:
    """Every batch through a staged store committed after it; some applied, discarded (a crash before the
    commit) and applied again, some by a new step over the committed state (a restart)."""
    rng = random.Random(seed)
    backing = DictStore()
    step, stored = CountingStep(config), Stored()
    for events, convs in batches:
        now_ms = int(max((e.occurred_at for e in events), default=T0).timestamp() * 1000)
        staged = StagedStore(backing)
        if rng.random() < 0.2:  # rows written, then a crash before the commit: the batch runs again
            stored.write(step.apply(staged, events, convs, now_ms))
            staged.discard()
        if rng.random() < 0.2:
            step = CountingStep(config)  # a restart: only the committed state is left
        stored.write(step.apply(staged, events, convs, now_ms))
        staged.commit()
    return stored, backing


def _parts_after(stored: Stored, last_batch: int) -> set[tuple[Any, ...]]:
    """What trackpipe.embedded_counting.uncommitted_counters finds: counters written after the last batch."""
    e = date(1970, 1, 1)
    found: set[tuple[Any, ...]] = set()
    for kind, table in stored.tables.items():
        for _, r in table.values():
            if r.version <= last_batch:
                continue
            if kind == "goal_days":
                found.add(("gd", r.project_id, r.goal_id, (r.day - e).days, r.currency))
            elif kind == "goal_pairs":
                found.add(("gp", r.project_id, r.goal_id, (r.day - e).days, (r.prev_day - e).days))
            else:
                found.add(("vp", r.project_id, (r.day - e).days, (r.prev_day - e).days))
    return found


def _last_rows(convs: list[Conversion]) -> list[Conversion]:
    """A batch's conversion rows as the stages hand them on: the last version per key (StageOutput.batch)."""
    last: dict[tuple[str, str], Conversion] = {}
    for c in convs:
        last[(c.goal_id, c.conversion_key)] = c
    return list(last.values())


def run_with_crashes(
    batches: list[tuple[list[Event], list[Conversion]]], crashes: set[int]
) -> tuple[Stored, int]:
    """Batch i in ``crashes`` is written, then lost before its commit; the restarted step replays it with
    the next one as one batch (more records were there by then). Returns the rows and how many resends."""
    config = CountingConfig(horizon_days=400)
    backing, stored = DictStore(), Stored()
    step = CountingStep(config)
    i, resends = 0, 0
    while i < len(batches):
        events, convs = batches[i]
        now_ms = int(max((e.occurred_at for e in events), default=T0).timestamp() * 1000)
        staged = StagedStore(backing)
        if i in crashes and i + 1 < len(batches):
            stored.write(step.apply(staged, events, _last_rows(convs), now_ms))
            staged.discard()  # the process dies before the commit; it restarts
            step = CountingStep(config)
            step.resend = _parts_after(stored, step.last_batch(backing))
            resends += bool(step.resend)
            events, convs = events + batches[i + 1][0], convs + batches[i + 1][1]
            i += 1
        stored.write(step.apply(staged, events, _last_rows(convs), now_ms))
        staged.commit()
        step.committed()
        i += 1
    return stored, resends


def test_a_batch_lost_before_its_commit_and_replayed_cut_otherwise_leaves_no_stale_counter() -> None:
    """The lost batch wrote counters the longer replay does not touch: a visitor's pair (day 5, day 3)
    that the replay makes (4, 3) and (5, 4); a goal day a conversion left again, and one of a conversion
    the replay sees reversed only. They are written again with their committed values."""
    d = [T0 + timedelta(days=n, hours=12) for n in range(7)]
    eur = Decimal(10)

    def c(key: str, who: str, day: int, version: int, deleted: bool = False) -> Conversion:
        return _conv("g", key, who, d[day], eur, "EUR", version, deleted)

    batches = [
        ([_event("v", d[3], 1)], [c("x", "v", 3, 1)]),
        (
            [_event("v", d[5], 2)],
            [c("x", "v", 5, 2), c("y", "w", 5, 3)],
        ),
        (
            [_event("v", d[4], 3)],
            [c("x", "v", 4, 4), c("y", "w", 5, 5, deleted=True)],
        ),
        ([_event("u", d[6], 4)], []),
    ]
    stored, resends = run_with_crashes(batches, {1})
    assert resends == 1
    for a, b in whole_day_periods(T0.date(), T0.date() + timedelta(days=7), 400):
        assert stored.answer(a, b) == truth(batches, a, b), (a, b)


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_lost_batches_replayed_cut_otherwise_on_random_streams(seed: int) -> None:
    batches = stream(seed, days=10)
    rng = random.Random(seed)
    stored, resends = run_with_crashes(batches, {i for i in range(len(batches)) if rng.random() < 0.3})
    assert resends
    for a, b in whole_day_periods(T0.date() - timedelta(days=2), T0.date() + timedelta(days=10), 400):
        assert stored.answer(a, b) == truth(batches, a, b), (a, b)


def whole_day_periods(first: date, last: date, longest: int) -> list[tuple[date, date]]:
    days = [first + timedelta(days=i) for i in range((last - first).days + 2)]
    return [(a, b) for i, a in enumerate(days) for b in days[i + 1 :] if (b - a).days <= longest]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counters_are_exact_for_every_whole_day_period(seed: int) -> None:
    batches = stream(seed, days=12)
    stored, _ = run(batches, CountingConfig(horizon_days=400), seed)
    assert stored.ready == {P: True}
    assert any(c.is_deleted for _, cs in batches for c in cs)
    for a, b in whole_day_periods(T0.date() - timedelta(days=2), T0.date() + timedelta(days=12), 400):
        assert stored.answer(a, b) == truth(batches, a, b), (a, b)


@pytest.mark.parametrize("seed", [4, 5])
def test_a_short_horizon_prunes_and_stays_exact_for_periods_within_it(seed: int) -> None:
    horizon = 3
    batches = stream(seed, days=30, recent=True)
    stored, backing = run(batches, CountingConfig(horizon_days=horizon, lateness=timedelta(hours=26)), seed)
    assert stored.ready == {P: True}  # no event was older than the days kept
    for a, b in whole_day_periods(T0.date() - timedelta(days=2), T0.date() + timedelta(days=30), horizon):
        assert stored.answer(a, b) == truth(batches, a, b), (a, b)
    # the pairs are those of the whole day sets, previous days farther than the horizon written as none:
    # a function of the input, whatever the pruning forgot meanwhile
    days_of: dict[str, set[date]] = {}
    for events, _ in batches:
        for e in events:
            days_of.setdefault(e.visitor_id, set()).add(e.occurred_at.date())
    pairs: Counter[tuple[date, date]] = Counter()
    for days in days_of.values():
        prev = date(1970, 1, 1)
        for d in sorted(days):
            pairs[(d, prev if (d - prev).days <= horizon else date(1970, 1, 1))] += 1
            prev = d
    kept = {(r.day, r.prev_day): r.visitors for _, r in stored.tables["visit_pairs"].values() if r.visitors}
    assert kept == dict(pairs)
    # a member (a visitor's days, its days as a converter of each goal) holds at most the days of
    # 2 x horizon before its latest
    entries = {k: _VISITOR.decode(unpack(v)[1]) for k, v in backing.items() if k.startswith("v\x1f")}
    members = [m for e in entries.values() for m in (e.own, *e.goals.values())]
    assert any(e.goals for e in entries.values()) and any(e.own.days for e in entries.values())
    assert all(m.days[-1] - m.days[0] <= 2 * horizon for m in members if m.days)
    assert any(m.floor for m in members)
    # the state of a visitor that never converted expires (horizon + lateness after its last new day):
    # swept, nothing needs it; a converter's lives as long as its rows (here: no retention, for ever)
    last_ms = int((T0 + timedelta(days=30)).timestamp() * 1000)
    expired = set(expired_keys(backing, last_ms + (horizon + 3) * DAY_MS))
    assert {k for k, e in entries.items() if not e.goals} <= expired
    assert not expired & {k for k, e in entries.items() if e.goals}


def test_a_visitor_state_expires_when_neither_its_visits_nor_its_conversions_need_it() -> None:
    """Its days as a visitor are needed (horizon + 1 days + lateness) after its last new day; its days as
    a converter as long as the rows they mirror (with a retention: the latest one's day + retention)."""
    config = CountingConfig(horizon_days=3, retention_days=10, lateness=timedelta(hours=2))
    step, backing = CountingStep(config), DictStore()
    now = T0 + timedelta(hours=1)
    now_ms = int(now.timestamp() * 1000)
    conv = _conv("g", "tx", "buyer", now, Decimal(5), "EUR", 1, False)
    step.apply(backing, [_event("buyer", now, 1), _event("viewer", now, 2)], [conv], now_ms)
    keep_ms = (3 + 1) * DAY_MS + 2 * 3_600_000
    viewer, buyer = f"v\x1f{P}\x1fviewer", f"v\x1f{P}\x1fbuyer"
    assert set(expired_keys(backing, now_ms + keep_ms - 1)) == set()
    assert set(expired_keys(backing, now_ms + keep_ms + 1)) == {viewer}
    row_ms = int((T0 + timedelta(days=1 + 10, hours=2)).timestamp() * 1000)
    assert buyer not in expired_keys(backing, row_ms - 1)
    assert buyer in expired_keys(backing, row_ms + 1)


def test_an_event_older_than_the_days_kept_marks_the_project_not_exact() -> None:
    step, backing = CountingStep(CountingConfig(horizon_days=2)), DictStore()
    now = T0 + timedelta(days=10)
    out = step.apply(backing, [_event("v", now, 1)], [], int(now.timestamp() * 1000))
    assert [(m.project_id, m.ready, m.max_days) for m in out.ready] == [(P, True, 2)]
    old = T0 + timedelta(days=7)  # 3 days before the visitor's latest: its previous day may be forgotten
    out = step.apply(backing, [_event("v", old, 2)], [], int(now.timestamp() * 1000))
    assert [(m.project_id, m.ready) for m in out.ready] == [(P, False)]
    out = step.apply(backing, [_event("w", now, 3)], [], int(now.timestamp() * 1000))
    assert out.ready == []  # never marked again
    assert as_date(0) == date(1970, 1, 1)
