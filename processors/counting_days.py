"""A member's days and the (day, previous day) pairs they count, for the counting step
(processors/counting.py; decision 151: previous days clamped to the horizon, days kept from a floor)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

from processors.counting_state import NO, Member

Delta = Callable[[int, int, int], None]  # (day, previous day, +1/-1)


class MemberDays:
    """Adds and removes days of one member, emitting the pair changes (previous days clamped to the
    horizon: a previous day more than ``horizon`` days back is written as NO)."""

    def __init__(self, horizon: int):
        self.h = horizon

    def clamp(self, prev: int, day: int) -> int:
        return prev if day - prev <= self.h else NO

    def known(self, m: Member, day: int) -> bool:
        """Every day of [day - horizon, day) the member had is still held: its pairs can be exact."""
        return day - self.h >= m.floor

    def add(self, m: Member, day: int, delta: Delta, weighted: bool) -> bool:
        """``day`` for the member (a converter: one more live conversion on it); False: it cannot be
        counted exactly (older than the days held)."""
        days = m.days
        i = bisect_left(days, day)
        if i < len(days) and days[i] == day:
            if weighted:
                m.weights[i] += 1
            return True
        if not self.known(m, day):
            return False
        prev = days[i - 1] if i else NO
        if i < len(days):  # the next day's previous day becomes this one
            nxt = days[i]
            delta(nxt, self.clamp(prev, nxt), -1)
            delta(nxt, self.clamp(day, nxt), +1)
        delta(day, self.clamp(prev, day), +1)
        days.insert(i, day)
        if weighted:
            m.weights.insert(i, 1)
        self.prune(m, weighted)
        return True

    def prune(self, m: Member, weighted: bool) -> None:
        """Forget the days no exact pair needs any more (2 x horizon before the latest)."""
        floor = m.days[-1] - 2 * self.h
        if floor > m.floor:
            m.floor = floor
            cut = bisect_left(m.days, floor)
            del m.days[:cut]
            if weighted:
                del m.weights[:cut]

    def remove(self, m: Member, day: int, delta: Delta) -> bool:
        """One live conversion less on ``day`` (a converter); the day goes when none is left."""
        days = m.days
        i = bisect_left(days, day)
        if i >= len(days) or days[i] != day:
            return False  # forgotten: older than the days held
        if m.weights[i] > 1:
            m.weights[i] -= 1
            return True
        exact = self.known(m, day)
        if exact:
            prev = days[i - 1] if i else NO
            delta(day, self.clamp(prev, day), -1)
            if i + 1 < len(days):
                nxt = days[i + 1]
                delta(nxt, self.clamp(day, nxt), -1)
                delta(nxt, self.clamp(prev, nxt), +1)
        del days[i], m.weights[i]
        return exact
