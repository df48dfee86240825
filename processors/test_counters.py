"""The writers' counters against brute force: pair counts give the distinct members of any whole-day
period, goal days the sums of the latest live versions, whatever the order of days and versions."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.counters import NO_DAY, CounterWriter, DayPairs, members_between
from schemas.rows import Conversion

D0 = date(2026, 1, 1)
SCOPE = ("p", "g")


def _distinct(days: dict[str, list[date]], a: date, b: date) -> int:
    return sum(1 for ds in days.values() if any(a <= d < b for d in ds))


def _periods(n: int) -> list[tuple[date, date]]:
    return [(D0 + timedelta(i), D0 + timedelta(j)) for i in range(n) for j in range(i + 1, n + 1)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 7)), max_size=60))
def test_pairs_give_the_distinct_members_of_every_period(steps: list[tuple[bool, int, int]]) -> None:
    pairs = DayPairs()
    held: dict[str, list[date]] = {}  # a multiset of days per member
    for add, m, d in steps:
        member, day = f"m{m}", D0 + timedelta(d)
        if add:
            pairs.add(SCOPE, member, day)
            held.setdefault(member, []).append(day)
        elif day in held.get(member, []):
            pairs.discard(SCOPE, member, day)
            held[member].remove(day)
    for a, b in _periods(8):
        assert members_between(pairs.pairs, SCOPE, a, b) == _distinct(held, a, b)
    assert all(n >= 0 for n in pairs.pairs.values())


def test_a_day_added_between_two_others_moves_the_pairs() -> None:
    pairs = DayPairs()
    d = [D0 + timedelta(i) for i in range(5)]
    pairs.add(SCOPE, "v", d[0])
    pairs.add(SCOPE, "v", d[4])
    pairs.add(SCOPE, "v", d[2])
    live = {k[1:]: n for k, n in pairs.pairs.items() if n}
    assert live == {(d[0], NO_DAY): 1, (d[2], d[0]): 1, (d[4], d[2]): 1}
    pairs.add(SCOPE, "v", d[2])  # a second live thing on that day: no pair changes
    pairs.discard(SCOPE, "v", d[2])
    assert {k[1:]: n for k, n in pairs.pairs.items() if n} == live
    pairs.discard(SCOPE, "v", d[2])
    assert {k[1:]: n for k, n in pairs.pairs.items() if n} == {(d[0], NO_DAY): 1, (d[4], d[0]): 1}


def _conversion(key: str, goal: str, visitor: str, when: datetime, revenue: Decimal, version: int,
                deleted: bool) -> Conversion:  # fmt: skip
    return Conversion(
        project_id="p", goal_id=goal, conversion_key=key, account_id="a", visitor_id=visitor,
        event_id=f"e-{key}-{version}", event_type="transaction", occurred_at=when, received_at=when,
        revenue=revenue, currency="EUR", products_count=0, transaction_id="", experiment_ids=(),
        variation_ids=(), version=version, status="x", status_class="normal", is_deleted=deleted,
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_goal_days_and_converters_follow_the_latest_live_versions(seed: int) -> None:
    rng = random.Random(seed)
    versions: list[Conversion] = []
    for n in range(rng.randrange(1, 40)):
        goal, visitor = rng.choice("ab"), rng.choice("vwxyz")
        when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(0, 24 * 8))
        revenue, deleted = Decimal(rng.randrange(0, 3)), False
        for v in range(rng.randrange(1, 5)):
            versions.append(_conversion(f"k{n}", goal, visitor, when, revenue, v + 1, deleted))
            change = rng.random()
            if change < 0.3:
                deleted = not deleted
            elif change < 0.5:
                when -= timedelta(hours=rng.randrange(0, 72))
            elif change < 0.7:
                visitor = rng.choice("vwxyz")
            else:
                revenue = Decimal(rng.randrange(0, 3))
    # arrival order keeps each key's versions in order; some rows are delivered again, late
    order = sorted(range(len(versions)), key=lambda i: (versions[i].version, rng.random()))
    arrivals = [versions[i] for i in order]
    arrivals += rng.sample(arrivals, len(arrivals) // 3)
    writer = CounterWriter("w")
    emitted = {}
    for offset, c in enumerate(arrivals):
        writer.conversion(c)
        for row in writer.rows(offset)["goal_days"]:
            emitted[(row.goal_id, row.day, row.currency)] = row
    latest: dict[tuple[str, str], Conversion] = {}
    for c in versions:
        if (c.goal_id, c.conversion_key) not in latest or latest[
            (c.goal_id, c.conversion_key)
        ].version < c.version:
            latest[(c.goal_id, c.conversion_key)] = c
    live = [c for c in latest.values() if not c.is_deleted]
    for goal in "ab":
        for a, b in _periods(9):
            mine = [c for c in live if c.goal_id == goal and a <= c.occurred_at.date() < b]
            rows = [r for (g, day, _), r in emitted.items() if g == goal and a <= day < b]
            assert sum(r.conversions for r in rows) == len(mine)
            assert sum(r.revenue for r in rows) == sum(c.revenue for c in mine)
            assert sum(r.with_revenue for r in rows) == sum(1 for c in mine if c.revenue)
            assert members_between(writer.converters.pairs, ("p", goal), a, b) == len(
                {c.visitor_id for c in mine}
            )


def test_visits_are_a_set_and_rows_carry_only_what_changed() -> None:
    writer = CounterWriter("w")
    writer.visit("p", "v", D0)
    writer.visit("p", "v", D0)  # redelivered: nothing more
    first = writer.rows(7)["visit_pairs"]
    assert [(r.day, r.prev_day, r.visitors, r.version) for r in first] == [(D0, NO_DAY, 1, 7)]
    assert writer.rows(8) == {"goal_days": [], "goal_pairs": [], "visit_pairs": []}
    writer.visit("p", "v", D0 - timedelta(1))  # an earlier visit arrives late
    rows = {(r.day, r.prev_day): r.visitors for r in writer.rows(9)["visit_pairs"]}
    assert rows == {(D0 - timedelta(1), NO_DAY): 1, (D0, NO_DAY): 0, (D0, D0 - timedelta(1)): 1}
