"""A deterministic, realistic Convert tracking stream (seeded): request bodies, events, envelope records.

Shape (what a Convert-instrumented site sends, reference 003): 20 projects with skewed traffic, visitors
that view experiments more often than they convert, goal hits, and transactions with ids of which one in
ten is a repeat (so the dedup has work to do). The bodies are what the load generator sends; the events and
envelope records are what the edge would make of them, built through the edge's own public parsers and
accumulator, so the processor and sink stages measure the same data the edge produces.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ingest.formats.context import RequestContext
from ingest.formats.convert_tracking import parse_convert_payload
from ingest.produce.accumulator import RecordAccumulator, Ticket
from schemas.events import Event
from schemas.partitioning import partition_for

PROJECTS = [f"{1000 + i}" for i in range(20)]
WEIGHTS = [1.0 / (i + 1) for i in range(20)]  # Zipf-like: project 1000 gets the most traffic
BROWSERS = ["CH", "FF", "SF", "ED", "OP"]
DEVICES = [["DESK"], ["MOB"], ["TAB"], ["DESK", "ALLPH"]]
SOURCES = ["direct", "search", "referral", "campaign"]
COUNTRIES = ["US", "GB", "DE", "FR", "RO", "BR", "IN"]
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) trackpipe-bench"
BASE_TIME = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class Stream:
    """Seeded generator of Convert payloads (dicts ready for orjson)."""

    def __init__(self, seed: int = 6):
        self.rng = random.Random(seed)
        self._tx = 0
        self._recent_tx: list[str] = []

    def _visitor(self) -> tuple[str, str]:
        project = self.rng.choices(PROJECTS, WEIGHTS)[0]
        return project, f"v-{project}-{self.rng.randrange(200_000)}"

    def _segment(self) -> dict[str, Any]:
        r = self.rng
        seg: dict[str, Any] = {
            "browser": r.choice(BROWSERS),
            "devices": r.choice(DEVICES),
            "source": r.choice(SOURCES),
            "new": r.randrange(2),
            "ctry": r.choice(COUNTRIES),
        }
        if r.random() < 0.2:
            seg["campaign"] = f"spring-sale-{r.randrange(5)}"
        return seg

    def event(self) -> dict[str, Any]:
        r = self.rng
        x = r.random()
        exp = r.randrange(100_000, 100_010)
        exps, vars_ = [exp], [exp * 10 + r.randrange(3)]
        if x < 0.6:
            return {"evt": "viewExp", "exps": exps, "vars": vars_}
        if x < 0.9:
            return {"evt": "hitGoal", "goals": [r.randrange(1, 11)], "exps": exps, "vars": vars_}
        if self._recent_tx and r.random() < 0.1:
            tid = r.choice(self._recent_tx)  # a repeat: the dedup drops its conversion
        else:
            self._tx += 1
            tid = f"order-{self._tx}"
            self._recent_tx = [*self._recent_tx[-999:], tid]
        return {
            "evt": "tr",
            "goals": [r.randrange(1, 11)],
            "exps": exps,
            "vars": vars_,
            "r": round(r.uniform(5, 300), 2),
            "prc": r.randrange(1, 5),
            "tid": tid,
        }

    def payload(self, events: int) -> dict[str, Any]:
        project, vid = self._visitor()
        return {
            "cid": "77",
            "pid": project,
            "vid": vid,
            "seg": self._segment(),
            "ev": [self.event() for _ in range(events)],
        }


def bodies(count: int, events_per_request: int, seed: int = 6) -> list[bytes]:
    """``count`` JSON request bodies of ``events_per_request`` events each."""
    s = Stream(seed)
    return [orjson.dumps(s.payload(events_per_request)) for _ in range(count)]


def recorded_events(count: int, seed: int = 6, base: datetime = BASE_TIME) -> list[Event]:
    """``count`` canonical events, as the edge's parser makes them from the stream's bodies.

    Requests carry 1 to 5 events (a page view plus what followed), arriving 2 ms apart from ``base``.
    """
    s = Stream(seed)
    out: list[Event] = []
    i = 0
    while len(out) < count:
        n = min(count - len(out), 1 + s.rng.randrange(5))
        ctx = RequestContext(
            received_at=base + timedelta(milliseconds=2 * i), client_ip="10.0.0.1", user_agent=USER_AGENT
        )
        out.extend(parse_convert_payload(s.payload(n), ctx, source_format="convert_json", max_events=1000))
        i += 1
    return out


def envelope_records(
    events: list[Event], *, partitions: int = 4, events_per_record: int = 100
) -> list[tuple[int, bytes]]:
    """Group events into envelope records the way the edge's accumulator does under load.

    Each linger window is modelled as ``partitions * events_per_record`` consecutive events; the
    accumulator groups them by visitor partition, so records carry ~``events_per_record`` events.
    """
    acc = RecordAccumulator(partitions, partition_for, max_events_per_record=max(500, events_per_record))
    out: list[tuple[int, bytes]] = []
    window = partitions * events_per_record
    for lo in range(0, len(events), window):
        acc.append(events[lo : lo + window], Ticket(lambda _err: None))
        out.extend((r.partition, r.payload) for r in acc.drain())
    return out


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for lo in range(0, len(items), size):
        yield items[lo : lo + size]
