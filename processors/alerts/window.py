"""One project's conversions, revenue and traffic by scope key, in second and minute buckets; sliding sums.

- Every input lands, by its ``received_at`` (stream time: the edge's clock, not the client's), in the
  **second** bucket and in the **minute** bucket it falls in, of every kept key it counts in. A bucket
  holds three integers: conversions, revenue in ten-thousandths (``REVENUE_SCALE``; the sink's
  Decimal(18, 4) precision, so sums are exact) and traffic events (events of a non-conversion type).
- Second buckets serve the sliding windows ``[t - W, t)`` (kept for the longest W of the rules reading the
  key); minute buckets serve the baselines (spike: the 24 h before the window, change: the same window a
  week earlier; kept that long, else only the current minute).
- A scope key is ``(goal, link, campaign)``, ``None`` meaning any. Only the keys the project's rules need
  are kept. A conversion counts in every kept key it matches; a traffic event in every kept key whose
  goal is ``None`` (traffic has no goal) and whose link and campaign match. ``PROJECT`` is always kept.
- Each level of a key has a **floor**: buckets below it were pruned, and input below it is dropped, so
  every bucket at or above the floor is complete. Each key also knows since which minute it has been
  counted completely (``since``, never below its minute floor): a baseline is never read from before.
- **Running sums**: a level remembers, per window length asked for, the totals of the last window asked
  for and moves them bucket by bucket to the next one (adds and prunes update them too), so the sum of a
  window that slides by one tick costs O(1) whatever its length. They are a cache, not state (not in the
  snapshot; rebuilt on first use; those not used since the last :meth:`WindowStore.sweep` are dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson

SECOND_MS = 1_000
MINUTE_MS = 60_000
REVENUE_SCALE = 10_000

ScopeKey = tuple[str | None, str | None, str | None]  # goal, link, campaign
PROJECT: ScopeKey = (None, None, None)


def second_of(ms: int) -> int:
    return ms - ms % SECOND_MS


def minute_of(ms: int) -> int:
    return ms - ms % MINUTE_MS


def revenue_units(revenue: Decimal) -> int:
    return int((revenue * REVENUE_SCALE).to_integral_value(ROUND_HALF_EVEN))


def key_text(key: ScopeKey) -> str:
    """The key as a JSON array text (a snapshot's object key)."""
    return orjson.dumps(list(key)).decode()


def key_from_text(text: str) -> ScopeKey:
    parts = orjson.loads(text)
    if (
        not isinstance(parts, list)
        or len(parts) != 3
        or not all(p is None or isinstance(p, str) for p in parts)
    ):
        raise ValueError(f"bad scope key {text!r}")
    return (parts[0], parts[1], parts[2])


@dataclass(frozen=True, slots=True)
class Totals:
    conversions: int = 0
    revenue_units: int = 0
    traffic: int = 0

    @property
    def revenue(self) -> float:
        return self.revenue_units / REVENUE_SCALE

    @property
    def activity(self) -> int:
        """Inputs of any kind (the project had data in the period when > 0)."""
        return self.conversions + self.traffic


class _Sum:
    """The totals of the buckets in [start, end)."""

    __slots__ = ("c", "end", "r", "start", "t", "used")

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.c = self.r = self.t = 0
        self.used = True


class Level:
    """One key's buckets of one size (``step``): ``{bucket start ms: [conversions, revenue, traffic]}``."""

    __slots__ = ("_sums", "buckets", "floor", "step")

    def __init__(self, step: int, buckets: dict[int, list[int]] | None = None, floor: int | None = None):
        self.step = step
        self.buckets: dict[int, list[int]] = buckets if buckets is not None else {}
        self.floor = floor  # buckets below were pruned; input below is dropped (None: nothing pruned yet)
        self._sums: dict[int, _Sum] = {}  # window length -> the running sum last asked for with it

    def add(self, at_ms: int, c: int, r: int, t: int) -> None:
        b = at_ms - at_ms % self.step
        if self.floor is None or b >= self.floor:
            self._put(b, c, r, t)

    def _put(self, b: int, c: int, r: int, t: int) -> None:
        v = self.buckets.get(b)
        if v is None:
            v = self.buckets[b] = [c, r, t]
        else:
            v[0] += c
            v[1] += r
            v[2] += t
        if not (v[0] or v[1] or v[2]):
            del self.buckets[b]
        for s in self._sums.values():
            if s.start <= b < s.end:
                s.c += c
                s.r += r
                s.t += t

    def total(self, start: int, end: int) -> Totals:
        """Totals of the buckets in [start, end) (bounds multiples of ``step``)."""
        if end <= start:
            return Totals()
        if start % self.step or end % self.step:
            raise ValueError(f"[{start}, {end}) is not aligned to {self.step} ms buckets")
        s = self._sums.get(end - start)
        if s is None:
            s = self._sums[end - start] = self._fresh(start, end)
        elif s.end != end:
            self._move(s, end)
        s.used = True
        return Totals(s.c, s.r, s.t)

    def _fresh(self, start: int, end: int) -> _Sum:
        s = _Sum(start, end)
        c = r = t = 0
        if (end - start) // self.step < len(self.buckets):
            get = self.buckets.get
            for b in range(start, end, self.step):
                v = get(b)
                if v is not None:
                    c, r, t = c + v[0], r + v[1], t + v[2]
        else:
            for b, v in self.buckets.items():
                if start <= b < end:
                    c, r, t = c + v[0], r + v[1], t + v[2]
        s.c, s.r, s.t = c, r, t
        return s

    def _move(self, s: _Sum, end: int) -> None:
        d = end - s.end
        if 2 * abs(d) // self.step >= min((s.end - s.start) // self.step, len(self.buckets)):
            fresh = self._fresh(s.start + d, end)  # cheaper (or no overlap): recount
            s.start, s.end, s.c, s.r, s.t = fresh.start, fresh.end, fresh.c, fresh.r, fresh.t
            return
        if d > 0:
            self._shift(s, s.end, end, 1)
            self._shift(s, s.start, s.start + d, -1)
        else:
            self._shift(s, end, s.end, -1)
            self._shift(s, s.start + d, s.start, 1)
        s.start += d
        s.end = end

    def _shift(self, s: _Sum, start: int, end: int, sign: int) -> None:
        get = self.buckets.get
        for b in range(start, end, self.step):
            v = get(b)
            if v is not None:
                s.c += sign * v[0]
                s.r += sign * v[1]
                s.t += sign * v[2]

    def prune(self, cut: int) -> None:
        """Drop the buckets below ``cut`` (rounded down to a bucket) and raise the floor to it. Amortized
        O(1) per bucket of time the floor moves."""
        cut -= cut % self.step
        if self.floor is not None and cut <= self.floor:
            return
        if self.floor is not None and (cut - self.floor) // self.step < len(self.buckets):
            gone = [b for b in range(self.floor, cut, self.step) if b in self.buckets]
        else:
            gone = [b for b in self.buckets if b < cut]
        for b in gone:
            v = self.buckets[b]
            self._put(b, -v[0], -v[1], -v[2])
        self.floor = cut

    def sweep(self) -> None:
        self._sums = {n: s for n, s in self._sums.items() if s.used}
        for s in self._sums.values():
            s.used = False

    def dump(self) -> list[Any]:
        """``[floor, bucket deltas (in steps), conversions, revenue, traffic]``, sorted."""
        times = sorted(self.buckets)
        deltas = [(b - p) // self.step for b, p in zip(times, [0, *times], strict=False)]
        cols = [[self.buckets[b][i] for b in times] for i in range(3)]
        return [self.floor, deltas, *cols]

    @classmethod
    def load(cls, step: int, row: list[Any]) -> Level:
        floor, deltas, conv, rev, traffic = row
        buckets: dict[int, list[int]] = {}
        b = 0
        for i, d in enumerate(deltas):
            b += d * step
            buckets[b] = [conv[i], rev[i], traffic[i]]
        return cls(step, buckets, floor)


class WindowStore:
    """One project's buckets, by key: a second level and a minute level."""

    def __init__(self) -> None:
        self._levels: dict[ScopeKey, tuple[Level, Level]] = {}  # seconds, minutes
        self._since: dict[ScopeKey, int | None] = {}  # counted completely from this minute (None: not yet)

    def keep_keys(self, keys: set[ScopeKey], since_ms: int | None = None) -> None:
        """Track exactly ``keys`` (and PROJECT): new ones start empty, counted from ``since_ms`` (None: from
        the first input they see), others are dropped."""
        keys = keys | {PROJECT}
        for k in [k for k in self._levels if k not in keys]:
            del self._levels[k]
            del self._since[k]
        for k in keys:
            if k not in self._levels:
                self._levels[k] = (Level(SECOND_MS), Level(MINUTE_MS))
                self._since[k] = since_ms

    def start(self, minute_ms: int) -> None:
        """The first input: keys not yet counting count from its minute."""
        for k, since in self._since.items():
            if since is None:
                self._since[k] = minute_ms

    def since(self, key: ScopeKey) -> int | None:
        """From which minute on ``key``'s minute buckets are complete (None: nothing counted yet)."""
        since = self._since.get(key)
        levels = self._levels.get(key)
        if since is None or levels is None:
            return since
        floor = levels[1].floor
        return since if floor is None else max(since, floor)

    def keys(self) -> list[ScopeKey]:
        return list(self._levels)

    def add(
        self, key: ScopeKey, at_ms: int, conversions: int = 0, revenue: int = 0, traffic: int = 0
    ) -> None:
        levels = self._levels.get(key)
        if levels is not None:
            levels[0].add(at_ms, conversions, revenue, traffic)
            levels[1].add(at_ms, conversions, revenue, traffic)

    def sum(self, key: ScopeKey, start_ms: int, end_ms: int) -> Totals:
        """Totals of the second buckets in [start_ms, end_ms) (whole seconds)."""
        levels = self._levels.get(key)
        return Totals() if levels is None else levels[0].total(start_ms, end_ms)

    def sum_minutes(self, key: ScopeKey, start_ms: int, end_ms: int) -> Totals:
        """Totals of the minute buckets in [start_ms, end_ms) (whole minutes)."""
        levels = self._levels.get(key)
        return Totals() if levels is None else levels[1].total(start_ms, end_ms)

    def prune(self, cuts: dict[ScopeKey, tuple[int, int]]) -> None:
        """Per key: drop the second buckets below the first cut and the minute buckets below the second
        (a key not in the mapping is left as is)."""
        for key, (seconds, minutes) in cuts.items():
            levels = self._levels.get(key)
            if levels is not None:
                levels[0].prune(seconds)
                levels[1].prune(minutes)

    def sweep(self) -> None:
        """Drop the running sums not asked for since the last sweep."""
        for sec, mins in self._levels.values():
            sec.sweep()
            mins.sweep()

    def bucket_count(self) -> int:
        return sum(len(s.buckets) + len(m.buckets) for s, m in self._levels.values())

    def dump(self) -> dict[str, Any]:
        """``{key: [since, seconds, minutes]}``, each level columnar, delta-encoded (:meth:`Level.dump`)."""
        return {
            key_text(k): [self._since[k], sec.dump(), mins.dump()] for k, (sec, mins) in self._levels.items()
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> WindowStore:
        store = cls()
        for text, (since, sec, mins) in data.items():
            key = key_from_text(text)
            store._levels[key] = (Level.load(SECOND_MS, sec), Level.load(MINUTE_MS, mins))
            store._since[key] = since
        return store
