"""Counters for the exact fast Top-5 (issue 16 item 5, docs/decisions.md 100-102): pure, no I/O.

A writer (one stage partition) keeps absolute counters and emits, after each input offset it applied,
the current value of every counter that changed, versioned by that offset. ClickHouse keeps the row of
the highest version per (counter, writer) (``ReplacingMergeTree(version)``) and the report sums the
writers, so a replayed range rewrites the same values instead of adding them again.

- **Goal days**: per (project, goal, UTC day, currency) the live conversions, their revenue and how many
  have a revenue. A new version of a conversion takes back what its previous row added and adds its
  own (a reversal adds nothing, an un-reversal adds again, a moved conversion time moves it to its day).
- **Distinct members over days by pairs**: for each member (a visitor of a project, a converter of a
  goal) its distinct days d1 < d2 < ... count once each as the pair (dk, d(k-1)), d1 as (d1, NO_DAY).
  The members seen in the whole days [a, b) are then exactly the pairs with a <= day < b and
  prev_day < a (each member counts at its first day in the period, and only there). Adding or
  removing one day of a member changes at most three pairs.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from schemas.rows import Conversion, GoalDayCounter, GoalPairCounter, VisitPairCounter

NO_DAY = date(1970, 1, 1)  # the previous day of a member's first day


def utc_day(t: datetime) -> date:
    """The UTC day of ``t`` (ClickHouse's ``toDate`` of a DateTime64(3, 'UTC'))."""
    return (t.astimezone(UTC) if t.tzinfo else t).date()


GoalDayKey = tuple[str, str, date, str]  # project, goal, day, currency
PairKey = tuple[tuple[str, ...], date, date]  # scope, day, previous day


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one conversion row (one goal of one conversion key) adds to the counters."""

    project: str
    goal: str
    day: date
    currency: str
    revenue: Decimal
    visitor: str
    live: bool

    @classmethod
    def of(cls, c: Conversion) -> Contribution:
        day = utc_day(c.occurred_at)
        return cls(c.project_id, c.goal_id, day, c.currency, c.revenue, c.visitor_id, not c.is_deleted)


@dataclass
class GoalDays:
    """Absolute (conversions, revenue, conversions with a revenue) per goal day; ``touched``: changed keys."""

    values: dict[GoalDayKey, tuple[int, Decimal, int]] = field(default_factory=dict)
    touched: set[GoalDayKey] = field(default_factory=set)

    def add(self, c: Contribution, sign: int) -> None:
        if not c.live:
            return
        key = (c.project, c.goal, c.day, c.currency)
        n, revenue, with_revenue = self.values.get(key, (0, Decimal(0), 0))
        self.values[key] = (n + sign, revenue + sign * c.revenue, with_revenue + (sign if c.revenue else 0))
        self.touched.add(key)


@dataclass
class DayPairs:
    """Each member's distinct days (with a multiplicity: how many live things put it there) and the pair
    counts per (scope, day, previous day) they make."""

    days: dict[tuple[tuple[str, ...], str], list[date]] = field(default_factory=dict)  # sorted, distinct
    weight: dict[tuple[tuple[str, ...], str, date], int] = field(default_factory=dict)
    pairs: dict[PairKey, int] = field(default_factory=dict)
    touched: set[PairKey] = field(default_factory=set)

    def _pair(self, scope: tuple[str, ...], day: date, prev: date, sign: int) -> None:
        key = (scope, day, prev)
        self.pairs[key] = self.pairs.get(key, 0) + sign
        self.touched.add(key)

    def add(self, scope: tuple[str, ...], member: str, day: date) -> None:
        w = (scope, member, day)
        self.weight[w] = self.weight.get(w, 0) + 1
        if self.weight[w] > 1:
            return
        days = self.days.setdefault((scope, member), [])
        i = bisect_left(days, day)
        prev = days[i - 1] if i else NO_DAY
        if i < len(days):  # the next day's previous day becomes this one
            self._pair(scope, days[i], prev, -1)
            self._pair(scope, days[i], day, +1)
        self._pair(scope, day, prev, +1)
        insort(days, day)

    def discard(self, scope: tuple[str, ...], member: str, day: date) -> None:
        w = (scope, member, day)
        left = self.weight.get(w, 0) - 1
        if left < 0:
            raise ValueError(f"{member} has no {day} in {scope}")
        if left:
            self.weight[w] = left
            return
        del self.weight[w]
        days = self.days[(scope, member)]
        i = bisect_left(days, day)
        prev = days[i - 1] if i else NO_DAY
        self._pair(scope, day, prev, -1)
        if i + 1 < len(days):
            self._pair(scope, days[i + 1], day, -1)
            self._pair(scope, days[i + 1], prev, +1)
        del days[i]
        if not days:
            del self.days[(scope, member)]

    def seen(self, scope: tuple[str, ...], member: str, day: date) -> bool:
        return (scope, member, day) in self.weight


def members_between(pairs: dict[PairKey, int], scope: tuple[str, ...], a: date, b: date) -> int:
    """Distinct members of ``scope`` seen on a day of [a, b): what the report's SQL computes."""
    return sum(n for (s, day, prev), n in pairs.items() if s == scope and a <= day < b and prev < a)


@dataclass
class CounterWriter:
    """The counters one writer keeps. ``conversion`` takes each conversion row as the conversion stage
    emits it (it remembers the row it counted before, per conversion key and goal: a row whose version is
    not newer changes nothing, so redelivered rows are harmless); ``visit`` takes each event's
    (project, visitor, day): a set, redelivery adds nothing. ``rows(offset)`` returns the changed counters
    as rows versioned by ``offset`` (the input offset just applied) and forgets what changed."""

    writer: str
    goal_days: GoalDays = field(default_factory=GoalDays)
    converters: DayPairs = field(default_factory=DayPairs)
    visitors: DayPairs = field(default_factory=DayPairs)
    counted: dict[tuple[str, str, str], tuple[int, Contribution]] = field(default_factory=dict)

    def conversion(self, c: Conversion) -> None:
        self.contribution(c.conversion_key, c.version, Contribution.of(c))

    def contribution(self, conversion_key: str, version: int, new: Contribution) -> None:
        """``conversion`` from the row's contribution (what a bulk feed, e.g. the bench, has at hand)."""
        k = (new.project, new.goal, conversion_key)
        before = self.counted.get(k)
        if before is not None and before[0] >= version:
            return
        if before is not None:
            old = before[1]
            self.goal_days.add(old, -1)
            if old.live:
                self.converters.discard((old.project, old.goal), old.visitor, old.day)
        self.goal_days.add(new, +1)
        if new.live:
            self.converters.add((new.project, new.goal), new.visitor, new.day)
        self.counted[k] = (version, new)

    def visit(self, project: str, visitor: str, day: date) -> None:
        scope = (project, "all", "*")
        if not self.visitors.seen(scope, visitor, day):
            self.visitors.add(scope, visitor, day)

    def rows(self, offset: int) -> dict[str, list[Any]]:
        gd = [
            GoalDayCounter(self.writer, p, g, d, cur, *self.goal_days.values[(p, g, d, cur)], offset)
            for p, g, d, cur in sorted(self.goal_days.touched)
        ]
        gp = [
            GoalPairCounter(self.writer, s[0], s[1], d, prev, self.converters.pairs[(s, d, prev)], offset)
            for s, d, prev in sorted(self.converters.touched)
        ]
        vp = [
            VisitPairCounter(
                self.writer, s[0], s[1], s[2], d, prev, self.visitors.pairs[(s, d, prev)], offset
            )
            for s, d, prev in sorted(self.visitors.touched)
        ]
        self.goal_days.touched.clear()
        self.converters.touched.clear()
        self.visitors.touched.clear()
        return {"goal_days": gd, "goal_pairs": gp, "visit_pairs": vp}
