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

The entries and their encoding are in ``counting_state``, a member's days and their pairs in
``counting_days``, the counter values and rows in ``counting_values``; their names are importable from
here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from processors.counting_days import Delta, MemberDays
from processors.counting_state import (
    COUNTED,
    DAY_MS,
    NEVER_MS,
    NO,
    VISITOR,
    Counted,
    Member,
    S,
    Visitor,
    as_date,
    epoch_day,
    load_entry,
    same_contribution,
    save_entry,
)
from processors.counting_values import CountedRows, CounterValues
from processors.store import KeyValueStore, StagedStore, pack, unpack
from schemas.events import Event
from schemas.rows import Conversion, CountersReady

_VISITOR = VISITOR  # the names tests and the wiring import from here

__all__ = [
    "DAY_MS",
    "NEVER_MS",
    "NO",
    "_VISITOR",
    "Counted",
    "CountedRows",
    "CountingConfig",
    "CountingStep",
    "Delta",
    "Member",
    "Visitor",
    "as_date",
    "epoch_day",
]


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
        self.days = MemberDays(config.horizon_days)
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
        values = CounterValues(store)
        broken: set[str] = set()
        self._visits(store, values, by_member, now_ms, broken)
        self._conversions(store, values, conversions, now_ms, broken)
        seq = self.last_batch(store) + 1
        store.put("#seq", pack(NEVER_MS, str(seq).encode()))
        for parts in self.resend:
            if parts not in values.values:
                values.load(parts, [0] if parts[0] != "gd" else [0, Decimal(0), 0])
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
        values: CounterValues,
        by_member: dict[tuple[str, str], set[int]],
        now_ms: int,
        broken: set[str],
    ) -> None:
        clamp = self.days.clamp
        for (project, visitor), days in by_member.items():
            key = f"v{S}{project}{S}{visitor}"
            v = load_entry(store, key, VISITOR)
            if v is None:  # a new visitor (the most frequent case): its days in order, nothing to take back
                prev = NO
                for d in sorted(days):
                    pv = clamp(prev, d)
                    values.pair(("vp", project, d, pv), +1)
                    prev = d
                v = Visitor(Member(0, sorted(days), []))
                self.days.prune(v.own, weighted=False)
                save_entry(store, key, v, now_ms + self.visitor_keep_ms)
                continue
            m = v.own
            if all(d in m.days for d in days):
                continue

            def delta(day: int, prev: int, sign: int, p: str = project) -> None:
                values.pair(("vp", p, day, prev), sign)

            for d in sorted(days):
                if not self.days.add(m, d, delta, weighted=False):
                    broken.add(project)
            save_entry(store, key, v, self._expiry(v, now_ms))

    def _conversions(
        self,
        store: KeyValueStore,
        values: CounterValues,
        conversions: Iterable[Conversion],
        now_ms: int,
        broken: set[str],
    ) -> None:
        for c in conversions:
            p, g = c.project_id, c.goal_id
            ck = f"c{S}{p}{S}{c.conversion_key}"
            held: dict[str, Counted] | None = load_entry(store, ck, COUNTED)
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
            save_entry(store, ck, held, expires)
            if before is not None:
                if same_contribution(before, new):
                    continue
                self._count(store, values, p, g, before, Decimal(before.revenue), -1, now_ms, broken)
            self._count(store, values, p, g, new, c.revenue, +1, now_ms, broken)

    def _count(
        self,
        store: KeyValueStore,
        values: CounterValues,
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
        v = load_entry(store, key, VISITOR)
        m = None if v is None else v.goals.get(g)
        if m is None and sign > 0:  # a new converter: its first day
            values.pair(("gp", p, g, c.day, NO), +1)
            if v is None:  # a converter without events (none of its own, or none kept)
                v = Visitor(Member(0, [], []))
            v.goals[g] = Member(0, [c.day], [1])
            save_entry(store, key, v, self._expiry(v, now_ms))
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
            save_entry(store, key, v, self._expiry(v, now_ms))
        else:
            store.delete(key)
