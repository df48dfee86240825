"""The conversions counted in the recent buckets, and which scope keys an input counts in.

:class:`Ledger` makes a conversion count once, at its latest version (see docs/alerts.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors.alerts.window import ScopeKey


@dataclass(slots=True)
class Entry:
    """What a conversion contributes now: where (second, link, campaign) and how much."""

    at_ms: int  # the second of its first row (kept across versions)
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
        for k in [k for k, e in self.entries.items() if e.at_ms < before_ms]:
            del self.entries[k]

    def dump(self) -> list[list[Any]]:
        return [
            [g, k, e.at_ms, e.revenue_units, int(e.counted), e.version, e.link, e.campaign]
            for (g, k), e in sorted(self.entries.items())
        ]

    @classmethod
    def load(cls, rows: list[list[Any]]) -> Ledger:
        ledger = cls()
        for g, k, at, rev, counted, version, link, campaign in rows:
            ledger.entries[(g, k)] = Entry(at, rev, bool(counted), version, link, campaign)
        return ledger


def conversion_matches(key: ScopeKey, goal: str, link: str, campaign: str) -> bool:
    g, ln, c = key
    return (g is None or g == goal) and (ln is None or ln == link) and (c is None or c == campaign)


def traffic_matches(key: ScopeKey, link: str, campaign: str) -> bool:
    g, ln, c = key
    return g is None and (ln is None or ln == link) and (c is None or c == campaign)
