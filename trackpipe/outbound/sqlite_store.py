"""The embedded mode's delivery store: ``outbound_due`` in the state database, on its own connection.

The planner writes due rows in the batch's transaction (:mod:`trackpipe.outbound.planning`); this store
reads the due ones and writes each attempt's result back, on a connection of its own (WAL, busy timeout)
used from one thread, so the loop never waits on the runner's transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sinks.outbound.schedule import Delivery
from trackpipe.outbound.loop import DueRow
from trackpipe.outbound.planning import BUSY_TIMEOUT_MS, ensure_schema

COLUMNS = (
    "id, project, goal_id, url, body, next_at, status, step, attempts, event, method, link_id, created_at"
)


def due_row(r: Any) -> DueRow:
    return DueRow(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12])


class SqliteDueStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbound-db")
        self._conn: sqlite3.Connection | None = None

    async def _in_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        ensure_schema(conn)
        self._conn = conn

    def _due(self, now: float, limit: int) -> list[DueRow]:
        assert self._conn is not None
        rows = self._conn.execute(
            f"SELECT {COLUMNS} FROM outbound_due"
            " WHERE next_at IS NOT NULL AND next_at <= ? AND status IN ('pending', 'failed')"
            " ORDER BY next_at LIMIT ?",
            (now, limit),
        ).fetchall()
        return [due_row(r) for r in rows]

    def _write(
        self, row: DueRow, new: Delivery, at: float, status: int | None, error: str | None, dead: str | None
    ) -> None:
        assert self._conn is not None
        self._conn.execute(
            "UPDATE outbound_due SET status = ?, next_at = ?, step = ?, attempts = ?, last_attempt_at = ?,"
            " last_status = ?, last_error = ?, dead_reason = ? WHERE id = ?",
            (
                new.status.value,
                None if new.due_at is None else new.due_at.timestamp(),
                new.step,
                new.attempts,
                at,
                status,
                error,
                dead,
                row.id,
            ),
        )

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def open(self) -> None:
        await self._in_db(self._open)

    async def due(self, now: float, limit: int) -> list[DueRow]:
        found: list[DueRow] = await self._in_db(self._due, now, limit)
        return found

    async def write(
        self, row: DueRow, new: Delivery, at: float, status: int | None, error: str | None, dead: str | None
    ) -> None:
        await self._in_db(self._write, row, new, at, status, error, dead)

    async def close(self) -> None:
        await self._in_db(self._close)
        self._db.shutdown(wait=True)
