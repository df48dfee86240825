"""Per-minute buckets of one project's conversions, revenue and traffic, by scope key; sliding sums.

- A bucket is keyed by the minute (epoch ms, a multiple of 60 000) of the input's ``received_at``
  (stream time: the edge's clock, not the client's). It holds three integers: conversions, revenue in
  ten-thousandths (``REVENUE_SCALE``; the sink's Decimal(18, 4) precision, so sums are exact) and traffic
  events (events of a non-conversion type: views, clicks, push opens, custom events).
- A scope key is ``(goal, link, campaign)``, ``None`` meaning any. Only the keys the project's rules need
  are kept. A conversion counts in every kept key it matches; a traffic event in every kept key whose
  goal is ``None`` (traffic has no goal) and whose link and campaign match. ``PROJECT`` is always kept.
- Buckets are sparse (a minute with no input has none) and pruned below a cutoff the engine computes from
  the rules' lookback, so a key holds at most lookback / 1 minute + 1 buckets. Each key knows since
  which minute it has been counted completely (``since``), so a baseline is never read from before.
- :class:`Ledger` makes a conversion count once, at its latest version (see docs/alerts.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson

MINUTE_MS = 60_000
REVENUE_SCALE = 10_000

ScopeKey = tuple[str | None, str | None, str | None]  # goal, link, campaign
PROJECT: ScopeKey = (None, None, None)


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


class WindowStore:
    """One project's buckets: ``{key: {minute_ms: [conversions, revenue_units, traffic]}}``."""

    def __init__(self) -> None:
        self._buckets: dict[ScopeKey, dict[int, list[int]]] = {}
        self._since: dict[ScopeKey, int | None] = {}  # counted completely from this minute (None: not yet)

    def keep_keys(self, keys: set[ScopeKey], since_ms: int | None = None) -> None:
        """Track exactly ``keys`` (and PROJECT): new ones start empty, counted from ``since_ms`` (None: from
        the first input they see), others are dropped."""
        keys = keys | {PROJECT}
        for k in [k for k in self._buckets if k not in keys]:
            del self._buckets[k]
            del self._since[k]
        for k in keys:
            if k not in self._buckets:
                self._buckets[k] = {}
                self._since[k] = since_ms

    def start(self, minute_ms: int) -> None:
        """The first input: keys not yet counting count from its minute."""
        for k, since in self._since.items():
            if since is None:
                self._since[k] = minute_ms

    def since(self, key: ScopeKey) -> int | None:
        """From which minute on ``key`` has been counted completely (None: nothing counted yet)."""
        return self._since.get(key)

    def keys(self) -> list[ScopeKey]:
        return list(self._buckets)

    def add(
        self, key: ScopeKey, minute_ms: int, conversions: int = 0, revenue: int = 0, traffic: int = 0
    ) -> None:
        buckets = self._buckets.get(key)
        if buckets is None:
            return
        b = buckets.get(minute_ms)
        if b is None:
            b = buckets[minute_ms] = [0, 0, 0]
        b[0] += conversions
        b[1] += revenue
        b[2] += traffic
        if b == [0, 0, 0]:
            del buckets[minute_ms]

    def sum(self, key: ScopeKey, start_ms: int, end_ms: int) -> Totals:
        """Totals of the buckets in [start_ms, end_ms) (minute-aligned bounds)."""
        buckets = self._buckets.get(key)
        if not buckets or end_ms <= start_ms:
            return Totals()
        c = r = t = 0
        span = (end_ms - start_ms) // MINUTE_MS
        if span < len(buckets):
            for m in range(start_ms, end_ms, MINUTE_MS):
                b = buckets.get(m)
                if b is not None:
                    c, r, t = c + b[0], r + b[1], t + b[2]
        else:
            for m, b in buckets.items():
                if start_ms <= m < end_ms:
                    c, r, t = c + b[0], r + b[1], t + b[2]
        return Totals(c, r, t)

    def prune(self, before_ms: int | dict[ScopeKey, int]) -> None:
        """Drop every bucket older than ``before_ms`` (one time for all keys, or per key: a key not in
        the mapping is left as is)."""
        for key, buckets in self._buckets.items():
            cut = before_ms if isinstance(before_ms, int) else before_ms.get(key)
            if cut is None or (buckets and min(buckets) >= cut):
                continue
            for m in [m for m in buckets if m < cut]:
                del buckets[m]

    def bucket_count(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def dump(self) -> dict[str, Any]:
        """Columnar, delta-encoded, sorted: ``{key: [since, minute deltas, conversions, revenue, traffic]}``
        (``since``: see :meth:`since`)."""
        out: dict[str, Any] = {}
        for key, buckets in self._buckets.items():
            minutes = sorted(buckets)
            deltas = [(m - p) // MINUTE_MS for m, p in zip(minutes, [0, *minutes], strict=False)]
            out[key_text(key)] = [
                self._since[key],
                deltas,
                [buckets[m][0] for m in minutes],
                [buckets[m][1] for m in minutes],
                [buckets[m][2] for m in minutes],
            ]
        return out

    @classmethod
    def load(cls, data: dict[str, Any]) -> WindowStore:
        store = cls()
        for text, (since, deltas, conv, rev, traffic) in data.items():
            buckets: dict[int, list[int]] = {}
            m = 0
            for i, d in enumerate(deltas):
                m += d * MINUTE_MS
                buckets[m] = [conv[i], rev[i], traffic[i]]
            key = key_from_text(text)
            store._buckets[key] = buckets
            store._since[key] = since
        return store


@dataclass(slots=True)
class Entry:
    """What a conversion contributes now: where (minute, link, campaign) and how much."""

    minute_ms: int
    revenue_units: int
    counted: bool
    version: int
    link: str
    campaign: str


LedgerKey = tuple[str, str]  # goal, conversion key


class Ledger:
    """The conversions counted in the recent buckets, by (goal, conversion key), so an update moves the
    conversion's contribution instead of adding a second one. Entries older than the correction horizon
    are pruned; a row for a conversion older than that horizon is then ignored (counted once, settled)."""

    def __init__(self) -> None:
        self.entries: dict[LedgerKey, Entry] = {}

    def prune(self, before_ms: int) -> None:
        for k in [k for k, e in self.entries.items() if e.minute_ms < before_ms]:
            del self.entries[k]

    def dump(self) -> list[list[Any]]:
        return [
            [g, k, e.minute_ms, e.revenue_units, int(e.counted), e.version, e.link, e.campaign]
            for (g, k), e in sorted(self.entries.items())
        ]

    @classmethod
    def load(cls, rows: list[list[Any]]) -> Ledger:
        ledger = cls()
        for g, k, m, rev, counted, version, link, campaign in rows:
            ledger.entries[(g, k)] = Entry(m, rev, bool(counted), version, link, campaign)
        return ledger


def conversion_matches(key: ScopeKey, goal: str, link: str, campaign: str) -> bool:
    g, ln, c = key
    return (g is None or g == goal) and (ln is None or ln == link) and (c is None or c == campaign)


def traffic_matches(key: ScopeKey, link: str, campaign: str) -> bool:
    g, ln, c = key
    return g is None and (ln is None or ln == link) and (c is None or c == campaign)
