"""The counters' absolute values a batch of the counting step changes (processors/counting.py), and the
rows it writes for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from processors.counting_state import NEVER_MS, VALUE, S, as_date, encode
from processors.store import KeyValueStore, pack, unpack
from schemas.rows import CountersReady, GoalDayCounter, GoalPairCounter, VisitPairCounter


@dataclass
class CountedRows:
    goal_days: list[GoalDayCounter] = field(default_factory=list)
    goal_pairs: list[GoalPairCounter] = field(default_factory=list)
    visit_pairs: list[VisitPairCounter] = field(default_factory=list)
    ready: list[CountersReady] = field(default_factory=list)


class CounterValues:
    """The absolute counter values a batch reads and changes, by their row's fields (kind, project, ...):
    loaded once per key, written at the end. A pair count is ``[n]``, a goal day ``[conversions, revenue,
    with revenue]``; the state key is the fields joined by ``\x1f``."""

    def __init__(self, store: KeyValueStore):
        self.store = store
        self.values: dict[tuple[Any, ...], list[Any]] = {}

    def load(self, parts: tuple[Any, ...], empty: list[Any]) -> list[Any]:
        raw = self.store.get(S.join(map(str, parts)))
        v: list[Any] = empty
        if raw is not None:
            v = list(VALUE.decode(unpack(raw)[1]))
            if len(v) == 3:
                v[1] = Decimal(v[1])
        self.values[parts] = v
        return v

    def pair(self, parts: tuple[Any, ...], sign: int) -> None:
        v = self.values.get(parts) or self.load(parts, [0])
        v[0] += sign

    def goal_day(self, parts: tuple[Any, ...], revenue: Decimal, sign: int) -> None:
        v = self.values.get(parts) or self.load(parts, [0, Decimal(0), 0])
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
                self.store.put(key, pack(NEVER_MS, encode(v if len(v) == 1 else [v[0], str(v[1]), v[2]])))
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
