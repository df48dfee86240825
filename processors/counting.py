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

State keys (``\\x1f``-separated): ``v`` (project, visitor) -> its days, and per goal its days as a
converter with their live conversions (one entry: a conversion's visitor is mostly an event's of the same
batch, so the step reads and writes one row for both); ``c`` (project, conversion key) -> the counted
row of each of its goals (what the row added);
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
    tz = t.tzinfo
    if tz is not None and tz is not UTC and t.utcoffset():
        t = t.astimezone(UTC)
    return t.toordinal() - _EPOCH


def as_date(day: int) -> date:
    return date.fromordinal(_EPOCH + day)


class Member(msgspec.Struct, array_like=True, gc=False):
    """A member's distinct days (sorted) from ``floor`` on; converters also count their live conversions
    per day (``weights``, parallel to ``days``)."""

    floor: int = 0
    days: list[int] = []
    weights: list[int] = []


class Visitor(msgspec.Struct, array_like=True, gc=False):
    """A visitor's state: its days as a visitor (``own``), and per goal its days as a converter."""

    own: Member
    goals: dict[str, Member] = {}


class Counted(msgspec.Struct, array_like=True, gc=False):
    """What one conversion row (one goal of one conversion key) added: its version and contribution."""

    version: int
    day: int
    currency: str
    revenue: str
    visitor: str
    live: bool


_VISITOR = msgspec.json.Decoder(Visitor)
_COUNTED = msgspec.json.Decoder(dict[str, Counted])
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


class _Values:
    """The absolute counter values a batch reads and changes, by their row's fields (kind, project, ...):
    loaded once per key, written at the end. A pair count is ``[n]``, a goal day ``[conversions, revenue,
    with revenue]``; the state key is the fields joined by ``\x1f``."""

    def __init__(self, store: KeyValueStore):
        self.store = store
        self.values: dict[tuple[Any, ...], list[Any]] = {}

    def _load(self, parts: tuple[Any, ...], empty: list[Any]) -> list[Any]:
        raw = self.store.get(S.join(map(str, parts)))
        v: list[Any] = empty
        if raw is not None:
            v = list(_VALUE.decode(unpack(raw)[1]))
            if len(v) == 3:
                v[1] = Decimal(v[1])
        self.values[parts] = v
        return v

    def pair(self, parts: tuple[Any, ...], sign: int) -> None:
        v = self.values.get(parts) or self._load(parts, [0])
        v[0] += sign

    def goal_day(self, parts: tuple[Any, ...], revenue: Decimal, sign: int) -> None:
        v = self.values.get(parts) or self._load(parts, [0, Decimal(0), 0])
        v[0] += sign
        if revenue:
            v[1] += revenue if sign > 0 else -revenue
            v[2] += sign

    def flush(self, writer: str, seq: int, out: CountedRows) -> None:
        for parts, v in self.values.items():
            key = S.join(map(str, parts))
            if not v[0] and (len(v) == 1 or not (v[1] or v[2])):
                self.store.delete(key)
            else:
                self.store.put(key, pack(NEVER_MS, _enc(v if len(v) == 1 else [v[0], str(v[1]), v[2]])))
            kind = parts[0]
            if kind == "gd":
                p, g, day, cur = parts[1:]
                out.goal_days.append(GoalDayCounter(writer, p, g, as_date(day), cur, v[0], v[1], v[2], seq))
            elif kind == "gp":
                p, g, day, prev = parts[1:]
                out.goal_pairs.append(GoalPairCounter(writer, p, g, as_date(day), as_date(prev), v[0], seq))
            else:
                p, day, prev = parts[1:]
                out.visit_pairs.append(
                    VisitPairCounter(writer, p, "all", "*", as_date(day), as_date(prev), v[0], seq)
                )


class CountingStep:
    """Counts one batch's output rows into the counters (see the module's doc)."""

    def __init__(self, config: CountingConfig, writer: str = "embedded"):
        self.config = config
        self.writer = writer
        #: counters a batch written but never committed changed (a crash between the write and the
        #: commit): the next batch writes their committed values too, whether it changes them or not
        #: (``resend``; cleared by ``committed``). A replay cut otherwise may not touch them, and the
        #: rows of the lost batch, of the same version, would stay (decision 153).
        self.resend: set[tuple[Any, ...]] = set()
        self.days = _Days(config.horizon_days)
        lateness_ms = int(config.lateness.total_seconds() * 1000)
        #: a visitor unseen this long has no previous day within the horizon for any event to come
        self.visitor_keep_ms = (config.horizon_days + 1) * DAY_MS + lateness_ms
        self.lateness_ms = lateness_ms

    def committed(self) -> None:
        """The batch's state is committed (its rows were written before): nothing left to resend."""
        self.resend.clear()

    def last_batch(self, store: KeyValueStore) -> int:
        """The number of the last committed batch (the counter rows' version)."""
        raw = store.get("#seq")
        return int(unpack(raw)[1]) if raw else 0

    def _row_expiry(self, day: int) -> int:
        """A counted conversion row (and its converter's days) live as long as its stored row: for ever,
        or until the retention's TTL took it."""
        r = self.config.retention_days
        return NEVER_MS if not r else (day + 1 + r) * DAY_MS + self.lateness_ms

    def apply(
        self, store: KeyValueStore, events: Sequence[Event], conversions: Sequence[Conversion], now_ms: int
    ) -> CountedRows:
        out = CountedRows()
        if not events and not conversions and not self.resend:
            return out
        by_member: dict[tuple[str, str], set[int]] = {}
        for project, visitor, day in {(e.project_id, e.visitor_id, epoch_day(e.occurred_at)) for e in events}:
            days = by_member.get((project, visitor))
            if days is None:
                by_member[(project, visitor)] = {day}
            else:
                days.add(day)
        seen = {p for p, _ in by_member} | {c.project_id for c in conversions}
        if isinstance(store, StagedStore) and store.reads_ahead:  # the keys it reads, in one read (SQLite)
            store.prefetch(
                [f"v{S}{p}{S}{v}" for p, v in by_member]
                + [f"v{S}{c.project_id}{S}{c.visitor_id}" for c in conversions]
                + [f"c{S}{c.project_id}{S}{c.conversion_key}" for c in conversions]
                + [f"p{S}{p}" for p in seen]
                + ["#seq"]
                # the counter values a new visitor, a new converter and a new conversion change
                + [f"vp{S}{p}{S}{d}{S}{NO}" for (p, _), days in by_member.items() for d in days]
                + [
                    f"{kind}{S}{c.project_id}{S}{c.goal_id}{S}{day}{S}{last}"
                    for c in conversions
                    for day in (epoch_day(c.occurred_at),)
                    for kind, last in (("gd", c.currency), ("gp", NO))
                ]
            )
        values = _Values(store)
        broken: set[str] = set()
        self._visits(store, values, by_member, now_ms, broken)
        self._conversions(store, values, conversions, now_ms, broken)
        seq = self.last_batch(store) + 1
        store.put("#seq", pack(NEVER_MS, str(seq).encode()))
        for parts in self.resend:
            if parts not in values.values:
                values._load(parts, [0] if parts[0] != "gd" else [0, Decimal(0), 0])
        values.flush(self.writer, seq, out)
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

    def _expiry(self, v: Visitor, now_ms: int) -> int:
        """A visitor's entry lives as long as its days as a visitor are needed (see ``visitor_keep_ms``)
        and as long as the rows its days as a converter mirror (``_row_expiry``)."""
        if v.goals and not self.config.retention_days:
            return NEVER_MS
        expires = now_ms + self.visitor_keep_ms
        for m in v.goals.values():
            expires = max(expires, self._row_expiry(m.days[-1]))
        return expires

    def _visits(
        self,
        store: KeyValueStore,
        values: _Values,
        by_member: dict[tuple[str, str], set[int]],
        now_ms: int,
        broken: set[str],
    ) -> None:
        clamp = self.days.clamp
        for (project, visitor), days in by_member.items():
            key = f"v{S}{project}{S}{visitor}"
            v = _load(store, key, _VISITOR)
            if v is None:  # a new visitor (the most frequent case): its days in order, nothing to take back
                prev = NO
                for d in sorted(days):
                    pv = clamp(prev, d)
                    values.pair(("vp", project, d, pv), +1)
                    prev = d
                v = Visitor(Member(0, sorted(days), []))
                self.days.prune(v.own, weighted=False)
                _save(store, key, v, now_ms + self.visitor_keep_ms)
                continue
            m = v.own
            if all(d in m.days for d in days):
                continue

            def delta(day: int, prev: int, sign: int, p: str = project) -> None:
                values.pair(("vp", p, day, prev), sign)

            for d in sorted(days):
                if not self.days.add(m, d, delta, weighted=False):
                    broken.add(project)
            _save(store, key, v, self._expiry(v, now_ms))

    def _conversions(
        self,
        store: KeyValueStore,
        values: _Values,
        conversions: Iterable[Conversion],
        now_ms: int,
        broken: set[str],
    ) -> None:
        for c in conversions:
            p, g = c.project_id, c.goal_id
            ck = f"c{S}{p}{S}{c.conversion_key}"
            held: dict[str, Counted] | None = _load(store, ck, _COUNTED)
            before = None if held is None else held.get(g)
            if before is not None and before.version > c.version:
                continue  # the stored row is newer: it stays
            day = epoch_day(c.occurred_at)
            new = Counted(c.version, day, c.currency, str(c.revenue), c.visitor_id, not c.is_deleted)
            if held is None:
                held = {g: new}
                expires = self._row_expiry(day)
            else:
                held[g] = new
                expires = max(self._row_expiry(x.day) for x in held.values())
            _save(store, ck, held, expires)
            if before is not None:
                if _same(before, new):
                    continue
                self._count(store, values, p, g, before, Decimal(before.revenue), -1, now_ms, broken)
            self._count(store, values, p, g, new, c.revenue, +1, now_ms, broken)

    def _count(
        self,
        store: KeyValueStore,
        values: _Values,
        p: str,
        g: str,
        c: Counted,
        revenue: Decimal,
        sign: int,
        now_ms: int,
        broken: set[str],
    ) -> None:
        if not c.live:
            return
        values.goal_day(("gd", p, g, c.day, c.currency), revenue, sign)
        key = f"v{S}{p}{S}{c.visitor}"
        v = _load(store, key, _VISITOR)
        m = None if v is None else v.goals.get(g)
        if m is None and sign > 0:  # a new converter: its first day
            values.pair(("gp", p, g, c.day, NO), +1)
            if v is None:  # a converter without events (none of its own, or none kept)
                v = Visitor(Member(0, [], []))
            v.goals[g] = Member(0, [c.day], [1])
            _save(store, key, v, self._expiry(v, now_ms))
            return

        def delta(day: int, prev: int, s: int) -> None:
            values.pair(("gp", p, g, day, prev), s)

        m = m or Member(0, [], [])
        ok = self.days.add(m, c.day, delta, weighted=True) if sign > 0 else self.days.remove(m, c.day, delta)
        if not ok:
            broken.add(p)
        if v is None:
            return  # nothing was held: nothing to keep
        if m.days:
            v.goals[g] = m
        else:
            v.goals.pop(g, None)
        if v.goals or v.own.days:
            _save(store, key, v, self._expiry(v, now_ms))
        else:
            store.delete(key)


def _same(a: Counted, b: Counted) -> bool:
    """The same contribution (a new version of the row that changes nothing counted)."""
    return (
        a.day == b.day
        and a.live == b.live
        and a.visitor == b.visitor
        and a.currency == b.currency
        and (a.revenue == b.revenue)
    )


def _load(store: KeyValueStore, key: str, decoder: msgspec.json.Decoder[Any]) -> Any | None:
    """The state of ``key``: the object staged in this batch (live), else decoded from its bytes."""
    if isinstance(store, StagedStore):
        held = store.get_object(key)
        if held is not None:
            return held
    raw = store.get(key)
    return None if raw is None else decoder.decode(unpack(raw)[1])


def _save(store: KeyValueStore, key: str, state: Any, expires_ms: int) -> None:
    if isinstance(store, StagedStore):
        store.put_object(key, state, _enc, expires_ms)
    else:
        store.put(key, pack(expires_ms, _enc(state)))
