"""A manual retry in the embedded state database, and the queue stats the loop reads for the gauges."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ingest.errors import Rejected
from trackpipe.outbound.sqlite_control import SqliteDeliveryControl
from trackpipe.outbound.sqlite_store import SqliteDueStore

ROWS = [  # id, status, next_at, step, attempts, dead_reason
    ("d1", "dead", None, 8, 8, "exhausted"),
    ("d2", "failed", 150.0, 2, 2, None),
    ("d3", "delivered", None, 1, 1, None),
    ("d4", "pending", 90.0, 0, 0, None),
]


async def _store(tmp_path: Path) -> SqliteDueStore:
    store = SqliteDueStore(tmp_path / "state.sqlite")
    await store.open()
    conn = sqlite3.connect(tmp_path / "state.sqlite")
    with conn:
        conn.executemany(
            "INSERT INTO outbound_due (id, project, goal_id, event, url, body, created_at, next_at,"
            " status, step, attempts, dead_reason)"
            " VALUES (?, 'p', 'g', 'conversion.tracked', 'u', x'', 1.0, ?, ?, ?, ?, ?)",
            [(i, n, s, st, a, dr) for i, s, n, st, a, dr in ROWS],
        )
    conn.close()
    return store


def _state(tmp_path: Path) -> dict[str, tuple[object, ...]]:
    conn = sqlite3.connect(tmp_path / "state.sqlite")
    rows = conn.execute(
        "SELECT id, status, next_at, step, attempts, dead_reason FROM outbound_due"
    ).fetchall()
    conn.close()
    return {r[0]: r[1:] for r in rows}


async def test_retry_brings_failed_and_dead_back_due_now(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    try:
        assert await store.stats(100.0) == (2, 10.0)  # d2 and d4 wait; d4 is 10 s late
        assert await store.retry(["d1", "d2", "d3", "d4", "unknown", "x') OR 1=1 --"], 200.0) == 2
        state = _state(tmp_path)
        assert state["d1"] == ("pending", 200.0, 0, 8, None)  # attempts keep counting
        assert state["d2"] == ("pending", 200.0, 0, 2, None)
        assert state["d3"][0] == "delivered" and state["d4"] == ("pending", 90.0, 0, 0, None)
        assert await store.retry([], 200.0) == 0
        assert await store.stats(200.0) == (3, 110.0)
    finally:
        await store.close()


class _Loop:
    def __init__(self, store: SqliteDueStore) -> None:
        import asyncio

        self.store = store
        self.wake = asyncio.Event()


async def test_the_control_wakes_the_loop_only_when_something_changed(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    loop = _Loop(store)
    control = SqliteDeliveryControl(lambda: loop, clock=lambda: 300.0)  # type: ignore[arg-type,return-value]
    try:
        assert await control.retry(["d3"]) == 0 and not loop.wake.is_set()
        assert await control.retry(["d1"]) == 1 and loop.wake.is_set()
    finally:
        await store.close()
    with pytest.raises(Rejected) as err:
        await SqliteDeliveryControl(lambda: None).retry(["d1"])
    assert err.value.status == 503
