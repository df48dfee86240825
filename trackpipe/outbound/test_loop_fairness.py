"""The delivery loop never lets one slow receiver keep the others' deliveries waiting: rows of a host
that already has enough attempts under way are skipped, and the query reaches past the rows in flight."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sinks.outbound.schedule import Delivery, Schedule, classify
from sinks.outbound.sender import AttemptResult, OutboundRequest
from trackpipe.outbound.loop import POSTBACK_EVENT, DeliveryLoop, DueRow


class MemoryStore:
    """Due rows in memory, oldest first (what SqliteDueStore answers, without the file)."""

    def __init__(self, rows: list[DueRow]):
        self.rows = {r.id: r for r in rows}
        self.written: dict[str, Delivery] = {}

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def due(self, now: float, limit: int) -> list[DueRow]:
        ready = [r for r in self.rows.values() if r.id not in self.written]
        return sorted(ready, key=lambda r: r.next_at or 0.0)[:limit]

    async def write(self, row, new, at, status, error, dead) -> None:
        self.written[row.id] = new


class HangingSender:
    """Attempts to ``slow.example`` never finish; others succeed at once."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def attempt(self, request: OutboundRequest) -> AttemptResult:
        if "slow.example" in request.url:
            await asyncio.Event().wait()
        self.sent.append(request.url)
        return AttemptResult(classify(204, 0.01), status=204)

    async def close(self) -> None: ...


def row(i: int, host: str, at: float) -> DueRow:
    url = f"https://{host}/pb?i={i}"
    return DueRow(f"pb_{host}_{i}", "p", "g", url, b"", at, "pending", 0, 0, POSTBACK_EVENT, "GET", "l", at)


async def test_a_hanging_host_does_not_hold_back_the_others():
    now = datetime.now(UTC).timestamp()
    slow = [row(i, "slow.example", now - 100 + i * 0.001) for i in range(500)]  # older: first in the query
    fast = [row(i, "fast.example", now - 10) for i in range(3)]
    store = MemoryStore(slow + fast)
    sender = HangingSender()
    loop = DeliveryLoop(
        store,
        lambda p, g: None,
        sender,  # type: ignore[arg-type]
        Schedule(),
        batch=50,
        poll_s=0.01,
        tasks_per_host=20,
    )
    await loop.start()
    try:
        for _ in range(500):
            if len(sender.sent) == 3:
                break
            await asyncio.sleep(0.01)
        assert sorted(sender.sent) == sorted(r.url for r in fast)
        assert loop.in_flight == 20  # the slow host's waiting attempts stay capped
    finally:
        await loop.close()
