"""The counting step: one writer's Top-5 counters kept in a state store (issue 16 item 5; decisions 100,
150-153). Pure: state in a :class:`~processors.store.KeyValueStore` (staged and committed with the batch
by the pipeline), rows out; the math is processors/counters.py's (goal days, distinct members by (day,
previous day) pairs), here over the keys a batch touches instead of a writer held in memory.

Fed once per batch with the batch's output rows: every stored event counts its (project, visitor, UTC
day); every conversion row replaces what the previous row of its (project, goal, conversion key) added,
as the ``conversions`` table's ``FINAL`` does (a lower version changes nothing, an equal one replaces:
ClickHouse keeps the last inserted). The rows it returns are the absolute values of every counter the
batch changed, versioned by the writer's batch sequence number (state: committed with the batch, so a
replayed batch reuses it and rewrites the same values).

Bounded (decision 151): a member's previous day is kept only within ``horizon`` days (a farther one is
written as ``NO_DAY``), which keeps every period of at most ``horizon`` whole days exact; a member keeps
its days from ``floor`` = latest - 2 x horizon on, and a day that would need a forgotten one (older than
floor + horizon) marks its project not exact instead of counting wrong (``CountersReady(ready=False)``).

State keys (``\\x1f``-separated): ``v`` (project, visitor) -> its days; ``m`` (project, goal, visitor)
-> converter days and their live conversions; ``c`` (project, goal, conversion key) -> the counted row;
``gd``/``gp``/``vp`` -> the absolute counter values (deleted at zero); ``p`` (project) -> marked ready
(1) or not exact (2); ``#seq`` -> the last batch number.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from processors.store import KeyValueStore, StagedStore, pack, unpack
from schemas.events import Event
from schemas.rows import Conversion, CountersReady, GoalDayCounter, GoalPairCounter, VisitPairCounter

DAY_MS = 86_400_000
NO = 0  # processors.counters.NO_DAY (1970-01-01) as an epoch day: the previous day of a first day
NEVER_MS = 1 << 62  # expiry of state that must live as long as the rows it mirrors
_EPOCH = date(1970, 1, 1).toordinal()
S = "\x1f"


def epoch_day(t: datetime) -> int:
    """The UTC day of ``t`` as days since 1970-01-01 (a naive time is taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() // 86400)


def as_date(day: int) -> date:
    return date.fromordinal(_EPOCH + day)


class Member(msgspec.Struct, array_like=True, gc=False):
    """A member's distinct days (sorted) from ``floor`` on; converters also count their live conversions
    per day (``weights``, parallel to ``days``)."""

    floor: int = 0
    days: list[int] = []
    weights: list[int] = []


class Counted(msgspec.Struct, array_like=True, gc=False):
    """What one conversion row (one goal of one conversion key) added: its version and contribution."""

    version: int
    day: int
    currency: str
    revenue: str
    visitor: str
    live: bool


_MEMBER = msgspec.json.Decoder(Member)
_COUNTED = msgspec.json.Decoder(Counted)
_VALUE = msgspec.json.Decoder(list[int | str])
_enc = msgspec.json.encode


@dataclass(frozen=True)
class CountingConfig:
    """``horizon_days``: the longest period the counters keep exact (``TRACKPIPE_REPORT_COUNTER_DAYS``);
    ``retention_days``: the rows' TTL (0: kept forever, so is what mirrors them); ``lateness``: how far
    behind the newest event an event may still arrive (the stages' bound; used for expiries)."""

    horizon_days: int = 400
    retention_days: int = 0
    lateness: timedelta = timedelta(hours=48)

    def __post_init__(self) -> None:
        if self.horizon_days < 1:
            raise ValueError("the counters' horizon must be at least one day")


@dataclass
class CountedRows:
    goal_days: list[GoalDayCounter] = field(default_factory=list)
    goal_pairs: list[GoalPairCounter] = field(default_factory=list)
    visit_pairs: list[VisitPairCounter] = field(default_factory=list)
    ready: list[CountersReady] = field(default_factory=list)


Delta = Callable[[int, int, int], None]  # (day, previous day, +1/-1)


class _Days:
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
        floor = days[-1] - 2 * self.h
        if floor > m.floor:  # forget the days no exact pair needs any more
            m.floor = floor
            cut = bisect_left(days, floor)
            del days[:cut]
            if weighted:
                del m.weights[:cut]
        return True

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


class _Values:
    """The absolute counter values a batch reads and changes (loaded once per key, written at the end)."""

    def __init__(self, store: KeyValueStore):
        self.store = store
        self.values: dict[str, list[int | str]] = {}
        self.touched: dict[str, tuple[Any, ...]] = {}  # key -> its row's fields

    def get(self, key: str) -> list[int | str] | None:
        v = self.values.get(key)
        if v is None:
            raw = self.store.get(key)
            if raw is not None:
                v = self.values[key] = _VALUE.decode(unpack(raw)[1])
        return v

    def pair(self, key: str, parts: tuple[Any, ...], sign: int) -> None:
        v = self.get(key)
        self.values[key] = [(int(v[0]) if v else 0) + sign]
        self.touched[key] = parts

    def goal_day(self, key: str, parts: tuple[Any, ...], revenue: Decimal, sign: int) -> None:
        v = self.get(key)
        n, total, with_revenue = (int(v[0]), Decimal(str(v[1])), int(v[2])) if v else (0, Decimal(0), 0)
        self.values[key] = [
            n + sign,
            str(total + sign * revenue),
            with_revenue + (sign if revenue else 0),
        ]
        self.touched[key] = parts

    def flush(self, writer: str, seq: int, out: CountedRows) -> None:
        for key, parts in self.touched.items():
            v = self.values[key]
            zero = int(v[0]) == 0 and (len(v) == 1 or (Decimal(str(v[1])) == 0 and int(v[2]) == 0))
            if zero:
                self.store.delete(key)
            else:
                self.store.put(key, pack(NEVER_MS, _enc(v)))
            kind = parts[0]
            if kind == "gd":
                p, g, day, cur = parts[1:]
                out.goal_days.append(
                    GoalDayCounter(
                        writer, p, g, as_date(day), cur, int(v[0]), Decimal(str(v[1])), int(v[2]), seq
                    )
                )
            elif kind == "gp":
                p, g, day, prev = parts[1:]
                out.goal_pairs.append(
                    GoalPairCounter(writer, p, g, as_date(day), as_date(prev), int(v[0]), seq)
                )
            else:
                p, day, prev = parts[1:]
                out.visit_pairs.append(
                    VisitPairCounter(writer, p, "all", "*", as_date(day), as_date(prev), int(v[0]), seq)
                )


class CountingStep:
    """Counts one batch's output rows into the counters (see the module's doc)."""

    def __init__(self, config: CountingConfig, writer: str = "embedded"):
        self.config = config
        self.writer = writer
        self.days = _Days(config.horizon_days)
        lateness_ms = int(config.lateness.total_seconds() * 1000)
        #: a visitor unseen this long has no previous day within the horizon for any event to come
        self.visitor_keep_ms = (config.horizon_days + 1) * DAY_MS + lateness_ms
        self.lateness_ms = lateness_ms

    def _row_expiry(self, day: int) -> int:
        """A counted conversion row (and its converter's days) live as long as its stored row: for ever,
        or until the retention's TTL took it."""
        r = self.config.retention_days
        return NEVER_MS if not r else (day + 1 + r) * DAY_MS + self.lateness_ms

    def apply(
        self, store: KeyValueStore, events: Sequence[Event], conversions: Sequence[Conversion], now_ms: int
    ) -> CountedRows:
        out = CountedRows()
        if not events and not conversions:
            return out
        values = _Values(store)
        broken: set[str] = set()
        self._visits(store, values, events, now_ms, broken)
        self._conversions(store, values, conversions, broken)
        raw = store.get("#seq")
        seq = (int(unpack(raw)[1]) if raw else 0) + 1
        store.put("#seq", pack(NEVER_MS, str(seq).encode()))
        values.flush(self.writer, seq, out)
        seen = {e.project_id for e in events} | {c.project_id for c in conversions}
        for project in sorted(seen):
            key = f"p{S}{project}"
            raw = store.get(key)
            status = unpack(raw)[1] if raw else b""
            if project in broken and status != b"2":
                store.put(key, pack(NEVER_MS, b"2"))
                out.ready.append(CountersReady(project, False, 0, 0))
            elif not status:
                store.put(key, pack(NEVER_MS, b"1"))
                cfg = self.config
                out.ready.append(CountersReady(project, True, cfg.horizon_days, cfg.retention_days))
        return out

    def _visits(
        self, store: KeyValueStore, values: _Values, events: Iterable[Event], now_ms: int, broken: set[str]
    ) -> None:
        by_member: dict[tuple[str, str], set[int]] = {}
        for e in events:
            by_member.setdefault((e.project_id, e.visitor_id), set()).add(epoch_day(e.occurred_at))
        expires = now_ms + self.visitor_keep_ms
        for (project, visitor), days in by_member.items():
            key = f"v{S}{project}{S}{visitor}"
            m = _load_member(store, key)
            if m is not None and all(d in m.days for d in days):
                continue
            m = m or Member(0, [], [])

            def delta(day: int, prev: int, sign: int, p: str = project) -> None:
                values.pair(f"vp{S}{p}{S}{day}{S}{prev}", ("vp", p, day, prev), sign)

            for d in sorted(days):
                if not self.days.add(m, d, delta, weighted=False):
                    broken.add(project)
            _save_member(store, key, m, expires)

    def _conversions(
        self, store: KeyValueStore, values: _Values, conversions: Iterable[Conversion], broken: set[str]
    ) -> None:
        for c in conversions:
            p, g = c.project_id, c.goal_id
            ck = f"c{S}{p}{S}{g}{S}{c.conversion_key}"
            before = _load_counted(store, ck)
            if before is not None and before.version > c.version:
                continue  # the stored row is newer: it stays
            new = Counted(
                c.version,
                epoch_day(c.occurred_at),
                c.currency,
                str(c.revenue),
                c.visitor_id,
                not c.is_deleted,
            )
            _save_counted(store, ck, new, self._row_expiry(new.day))
            if before is not None and _same(before, new):
                continue
            if before is not None:
                self._count(store, values, p, g, before, -1, broken)
            self._count(store, values, p, g, new, +1, broken)

    def _count(
        self, store: KeyValueStore, values: _Values, p: str, g: str, c: Counted, sign: int, broken: set[str]
    ) -> None:
        if not c.live:
            return
        values.goal_day(
            f"gd{S}{p}{S}{g}{S}{c.day}{S}{c.currency}",
            ("gd", p, g, c.day, c.currency),
            Decimal(c.revenue),
            sign,
        )
        key = f"m{S}{p}{S}{g}{S}{c.visitor}"
        m = _load_member(store, key) or Member(0, [], [])

        def delta(day: int, prev: int, s: int) -> None:
            values.pair(f"gp{S}{p}{S}{g}{S}{day}{S}{prev}", ("gp", p, g, day, prev), s)

        ok = self.days.add(m, c.day, delta, weighted=True) if sign > 0 else self.days.remove(m, c.day, delta)
        if not ok:
            broken.add(p)
        if m.days:
            _save_member(store, key, m, self._row_expiry(m.days[-1]))
        else:
            store.delete(key)


def _same(a: Counted, b: Counted) -> bool:
    return (a.day, a.currency, a.revenue, a.visitor, a.live) == (
        b.day,
        b.currency,
        b.revenue,
        b.visitor,
        b.live,
    )


def _load_member(store: KeyValueStore, key: str) -> Member | None:
    if isinstance(store, StagedStore):
        held = store.get_object(key)
        if held is not None:
            return held
    raw = store.get(key)
    return None if raw is None else _MEMBER.decode(unpack(raw)[1])


def _save_member(store: KeyValueStore, key: str, m: Member, expires_ms: int) -> None:
    if isinstance(store, StagedStore):
        store.put_object(key, m, _enc, expires_ms)
    else:
        store.put(key, pack(expires_ms, _enc(m)))


def _load_counted(store: KeyValueStore, key: str) -> Counted | None:
    raw = store.get(key)
    return None if raw is None else _COUNTED.decode(unpack(raw)[1])


def _save_counted(store: KeyValueStore, key: str, c: Counted, expires_ms: int) -> None:
    store.put(key, pack(expires_ms, _enc(c)))
