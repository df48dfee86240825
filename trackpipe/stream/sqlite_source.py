"""The embedded stream: ``stream_events`` in the state database, written with each batch's commit
(trackpipe.outbound.planning), read here on a connection of its own. The cursor is the row's ``seq``
(numbered in commit order). Messages older than the retention are deleted; a cursor before the oldest
deleted one is expired (a gap would follow)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from schemas.stream.source import CursorError, StreamItem
from trackpipe.outbound.planning import BUSY_TIMEOUT_MS, ensure_schema

META = "CREATE TABLE IF NOT EXISTS stream_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
PRUNE_EVERY_S = 300.0


def parse_cursor(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise CursorError(f"Last-Event-ID {text[:40]!r} is not a cursor of this stream")
    return int(text)


class SqliteStreamSource:
    def __init__(self, path: Path, retention_s: float, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.retention_s = retention_s
        self.clock = clock
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-db")
        self._conn: sqlite3.Connection | None = None
        self._changed = asyncio.Event()
        self._last_prune = 0.0

    def notify(self) -> None:
        """A batch committed: readers waiting for messages look again (each waits on the event that was
        current when it last looked, so none misses a commit)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _in_db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            ensure_schema(conn)
            conn.execute(META)
            self._conn = conn
        return self._conn

    def _latest(self, project: str) -> int | None:
        row = (
            self._connection()
            .execute("SELECT max(seq) FROM stream_events WHERE project = ?", (project,))
            .fetchone()
        )
        return None if row is None or row[0] is None else int(row[0])

    def _read(self, project: str, after: int, limit: int) -> list[StreamItem]:
        conn = self._connection()
        pruned = conn.execute("SELECT value FROM stream_meta WHERE key = 'pruned_through'").fetchone()
        if pruned is not None and after < int(pruned[0]) and after >= 0:
            raise CursorError(f"Last-Event-ID {after} is older than the retained stream", expired=True)
        rows = conn.execute(
            "SELECT seq, type, body FROM stream_events WHERE project = ? AND seq > ? ORDER BY seq LIMIT ?",
            (project, after, limit),
        ).fetchall()
        return [StreamItem(str(r[0]), r[1], bytes(r[2])) for r in rows]

    def _prune(self, now: float) -> None:
        conn = self._connection()
        cutoff = now - self.retention_s
        row = conn.execute("SELECT max(seq) FROM stream_events WHERE at < ?", (cutoff,)).fetchone()
        if row is None or row[0] is None:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM stream_events WHERE seq <= ?", (row[0],))
            conn.execute(
                "INSERT INTO stream_meta (key, value) VALUES ('pruned_through', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                (row[0],),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def latest(self, project: str) -> str | None:
        found = await self._in_db(self._latest, project)
        return None if found is None else str(found)

    async def read(self, project: str, after: str | None, limit: int, wait_s: float) -> list[StreamItem]:
        start = -1 if after is None else parse_cursor(after)
        now = self.clock()
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            await self._in_db(self._prune, now)
        deadline = time.monotonic() + wait_s
        while True:
            changed = self._changed
            items: list[StreamItem] = await self._in_db(self._read, project, start, limit)
            left = deadline - time.monotonic()
            if items or left <= 0:
                return items
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=left)

    async def close(self) -> None:
        def close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._in_db(close)
        self._db.shutdown(wait=True)
