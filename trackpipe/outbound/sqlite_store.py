"""The embedded mode's delivery store: ``outbound_due`` in the state database, on its own connection.

The planner writes due rows in the batch's transaction (:mod:`trackpipe.outbound.planning`); this store
reads the due ones and writes each attempt's result back, on a connection of its own (WAL, busy timeout)
used from one thread, so the loop never waits on the runner's transaction.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sinks.outbound.schedule import Delivery, DisableReason, Endpoint
from trackpipe.outbound.loop import DueRow
from trackpipe.outbound.planning import BUSY_TIMEOUT_MS, ensure_schema

ENDPOINTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbound_endpoints (
    key TEXT PRIMARY KEY,
    failures TEXT NOT NULL,
    disabled_at REAL,
    disabled_reason TEXT
) WITHOUT ROWID
"""

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
        conn.execute(ENDPOINTS_SCHEMA)  # the endpoint circuit's state (trackpipe/outbound/endpoints.py)
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

    def _retry(self, ids: list[str], now: float) -> int:
        assert self._conn is not None
        cur = self._conn.execute(
            "UPDATE outbound_due SET status = 'pending', next_at = ?, step = 0, dead_reason = NULL"
            " WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('failed', 'dead')",
            (now, json.dumps(ids)),
        )
        return int(cur.rowcount)

    def _stats(self, now: float) -> tuple[int, float]:
        assert self._conn is not None
        depth, oldest = self._conn.execute(
            "SELECT count(*), min(next_at) FROM outbound_due"
            " WHERE next_at IS NOT NULL AND status IN ('pending', 'failed')"
        ).fetchone()
        return int(depth), 0.0 if oldest is None else max(0.0, now - float(oldest))

    def _load_endpoints(self) -> dict[str, Endpoint]:
        assert self._conn is not None
        found = {}
        for key, failures, disabled_at, reason in self._conn.execute(
            "SELECT key, failures, disabled_at, disabled_reason FROM outbound_endpoints"
        ):
            found[key] = Endpoint(
                tuple(datetime.fromtimestamp(t, UTC) for t in json.loads(failures)),
                None if disabled_at is None else datetime.fromtimestamp(disabled_at, UTC),
                None if reason is None else DisableReason(reason),
            )
        return found

    def _save_endpoint(self, key: str, e: Endpoint) -> None:
        assert self._conn is not None
        if e == Endpoint():
            self._conn.execute("DELETE FROM outbound_endpoints WHERE key = ?", (key,))
            return
        self._conn.execute(
            "INSERT OR REPLACE INTO outbound_endpoints (key, failures, disabled_at, disabled_reason)"
            " VALUES (?, ?, ?, ?)",
            (
                key,
                json.dumps([t.timestamp() for t in e.failures]),
                None if e.disabled_at is None else e.disabled_at.timestamp(),
                None if e.disabled_reason is None else e.disabled_reason.value,
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

    async def retry(self, ids: Sequence[str], now: float) -> int:
        """A manual retry: the failed or dead ones of ``ids`` become pending, due at ``now``, at step 0
        (a fresh round of the schedule; ``attempts`` keeps counting). Returns how many changed."""
        if not ids:
            return 0
        changed: int = await self._in_db(self._retry, list(ids), now)
        return changed

    async def stats(self, now: float) -> tuple[int, float]:
        """(deliveries waiting to be sent: pending or failed, age in seconds of the oldest one due:
        ``now`` - its ``next_at``, 0 when none is overdue)."""
        found: tuple[int, float] = await self._in_db(self._stats, now)
        return found

    async def load_endpoints(self) -> dict[str, Endpoint]:
        """The endpoint circuit's saved states (trackpipe.outbound.endpoints.EndpointStore)."""
        found: dict[str, Endpoint] = await self._in_db(self._load_endpoints)
        return found

    async def save_endpoint(self, key: str, endpoint: Endpoint) -> None:
        """Store ``endpoint`` (a clean one is deleted)."""
        await self._in_db(self._save_endpoint, key, endpoint)

    async def close(self) -> None:
        await self._in_db(self._close)
        self._db.shutdown(wait=True)
