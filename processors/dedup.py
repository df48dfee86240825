"""Transaction dedup: a transaction id counts once per project, within a bounded window.

State is a mapping key -> first-seen time; keys older than the window leave (bounded memory). The
sink is idempotent on the same key too, so a restart that loses this state never double-counts.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta

from processors.outcome import Drop, Ok, Outcome
from schemas.events import Event

DEFAULT_WINDOW = timedelta(days=31)  # at least the longest attribution window (30 days)


def dedup_key(event: Event) -> str | None:
    if event.transaction_id:
        return f"{event.project_id}\x1f{event.transaction_id}"
    return None


class TransactionDedup:
    def __init__(self, window: timedelta = DEFAULT_WINDOW, max_keys: int = 5_000_000):
        self.window = window
        self.max_keys = max_keys
        self._seen: OrderedDict[str, datetime] = OrderedDict()  # insertion order == first-seen order
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, event: Event) -> Outcome[Event]:
        key = dedup_key(event)
        if key is None:
            return Ok(event)
        self._expire(event.received_at)
        first = self._seen.get(key)
        if first is not None and event.received_at - first <= self.window:
            return Drop(f"duplicate transaction {event.transaction_id!r} (first seen {first.isoformat()})")
        self._seen[key] = event.received_at
        self._seen.move_to_end(key)
        return Ok(event)

    def _expire(self, now: datetime) -> None:
        horizon = now - self.window
        while self._seen:
            seen = next(iter(self._seen.values()))
            if seen >= horizon and len(self._seen) < self.max_keys:
                break
            self._seen.popitem(last=False)
            self.evicted += 1

    def snapshot(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in self._seen.items()}

    def restore(self, state: dict[str, str]) -> None:
        for k, v in sorted(state.items(), key=lambda kv: kv[1]):
            self._seen[k] = datetime.fromisoformat(v)
