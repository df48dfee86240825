"""Goal webhooks in the embedded mode: planned with each batch, sent by a loop (issue 13).

Planning (:class:`OutboundPlanning`) runs inside the batch protocol, on the state database's connection,
before the batch commits: the digests of the batch's conversions are read, :func:`planner.plan` decides,
and the changed digests (``outbound_digests``) and the due deliveries (``outbound_due``, key = the
webhook-id, ``INSERT OR IGNORE``) are written in the transaction that ``SqliteState.commit`` closes with
the stage state and the log offset. A failed batch is rolled back with it (``discard``); a batch replayed
after a crash plans the same ids and bodies, and an id already stored is kept as it is.

Sending (:class:`DeliveryLoop`) uses its own connection to the same file (WAL, busy timeout): it picks
deliveries whose ``next_at`` has come, signs each attempt at its own time with the goal's current key
ring, makes the attempt (:class:`sinks.outbound.sender.OutboundSender`), applies the retry schedule and
writes the delivery's new state back. A crash after an attempt and before its state is written sends it
again (at least once, same id, same body). Delivered and dead deliveries stay in the table.

Traffic-source S2S postbacks ride the same tables: planned with the batch (:func:`planner.plan_postbacks`,
their per-(conversion, link) digests in ``outbound_fired``), stored in ``outbound_due`` with event
``postback``, the link and the rendered method, URL and body, and sent by the same loop exactly as
stored, with no signature headers (a POST carries its form body).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from processors.runtime.sqlite_state import SqliteState, StateError
from schemas.config import Goal, Link
from schemas.outbound.postbacks import TemplateError
from schemas.outbound.signing import signed_headers
from schemas.outbound.ssrf import AllowList
from schemas.rows import Conversion
from sinks.outbound.events import Digest, Key
from sinks.outbound.planner import (
    GoalOf,
    PostbackKey,
    RuleOf,
    keys_of,
    plan,
    plan_postbacks,
    postback_keys_of,
    postback_rule,
)
from sinks.outbound.schedule import Delivery, DeliveryStatus, Rng, Schedule
from sinks.outbound.sender import AttemptResult, OutboundRequest, OutboundSender
from sinks.outbound.templates import FORM_CONTENT_TYPE, FiredDigest, PostbackRule

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbound_digests (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbound_due (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    goal_id TEXT NOT NULL,
    event TEXT NOT NULL,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL,
    next_at REAL,
    status TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at REAL,
    last_status INTEGER,
    last_error TEXT,
    dead_reason TEXT
);
CREATE INDEX IF NOT EXISTS outbound_due_next ON outbound_due (next_at) WHERE next_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbound_fired (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""
# Columns added to ``outbound_due`` after its first release (a state file from before gets them).
ADDED_COLUMNS = {
    "method": "TEXT NOT NULL DEFAULT 'POST'",
    "link_id": "TEXT NOT NULL DEFAULT ''",
}
POSTBACK_EVENT = "postback"  # ``outbound_due.event`` of an S2S postback (webhooks: conversion.*)

BUSY_TIMEOUT_MS = 5000


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)
    have = {r[1] for r in conn.execute("PRAGMA table_info(outbound_due)")}
    for name, decl in ADDED_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE outbound_due ADD COLUMN {name} {decl}")


def _key_text(key: Key | PostbackKey) -> str:
    return "\x1f".join(key)


def goal_lookup(goal: Callable[[str], Goal | None]) -> GoalOf:
    """``goal_of(project, goal_id)`` from a lookup by id (the config state's ``goal``)."""

    def goal_of(project: str, goal_id: str) -> Goal | None:
        found = goal(goal_id)
        return found if found is not None and found.project == project else None

    return goal_of


def rule_lookup(link: Callable[[str], Link | None], allow: AllowList) -> RuleOf:
    """``rule_of(project, link_id)`` from a lookup by id (the config state's ``link``), each link's
    settings parsed once while they stay the same. A template refused now (the allow-list narrowed
    since it was saved) plans nothing for that link, logged once."""
    parsed: dict[str, tuple[Link, PostbackRule | None]] = {}

    def rule_of(project: str, link_id: str) -> PostbackRule | None:
        found = link(link_id)
        if found is None or found.project != project:
            return None
        cached = parsed.get(link_id)
        if cached is not None and cached[0] == found:
            return cached[1]
        try:
            rule = postback_rule(found, allow)
        except TemplateError as exc:
            log.warning("outbound: link %s postback not planned: %s", link_id, exc)
            rule = None
        parsed[link_id] = (found, rule)
        return rule

    return rule_of


class OutboundPlanning:
    """Plans a batch's goal webhooks into the state database's open transaction (see the module doc).
    Called from the runner's executor, like the other state writes."""

    def __init__(
        self,
        state: SqliteState,
        goal_of: GoalOf,
        clock: Callable[[], datetime] | None = None,
        rule_of: RuleOf | None = None,
    ):
        self.state = state
        self.goal_of = goal_of
        self.rule_of: RuleOf = rule_of or (lambda project, link_id: None)
        self.clock = clock or (lambda: datetime.now(UTC))
        with state.lock:
            ensure_schema(state.conn)
            state.conn.commit()

    def stage(self, rows: Sequence[Conversion]) -> int:
        """Write the digests and due deliveries of ``rows`` (uncommitted: the batch commit makes them
        durable, its rollback forgets them). Returns the number of deliveries planned."""
        conn = self.state.conn
        with self.state.lock:
            try:
                digests: dict[Key, Digest] = {}
                for key in keys_of(rows):
                    found = conn.execute(
                        "SELECT value FROM outbound_digests WHERE key = ?", (_key_text(key),)
                    ).fetchone()
                    if found is not None:
                        digests[key] = Digest.from_json(bytes(found[0]))
                now = self.clock()
                planned = plan(rows, digests, self.goal_of, now)
                postbacks = self._stage_postbacks(conn, rows, now)
                if planned.is_empty:
                    return postbacks
                conn.executemany(
                    "INSERT OR REPLACE INTO outbound_digests (key, value) VALUES (?, ?)",
                    [(_key_text(k), d.to_json()) for k, d in planned.digests.items()],
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO outbound_due (id, project, goal_id, event, url, body, created_at,"
                    " next_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            d.delivery_id,
                            d.project,
                            d.goal_id,
                            d.event.value,
                            d.url,
                            d.body,
                            d.created_at.timestamp(),
                            d.next_at.timestamp(),
                            DeliveryStatus.PENDING.value,
                        )
                        for d in planned.due
                    ],
                )
            except sqlite3.OperationalError as exc:
                raise StateError(f"outbound planning failed: {exc}", retriable=True) from exc
            except sqlite3.DatabaseError as exc:
                raise StateError(f"outbound planning failed: {exc}", retriable=False) from exc
        return len(planned.due) + postbacks

    def _stage_postbacks(self, conn: sqlite3.Connection, rows: Sequence[Conversion], now: datetime) -> int:
        fired: dict[PostbackKey, FiredDigest] = {}
        for key in postback_keys_of(rows):
            found = conn.execute(
                "SELECT value FROM outbound_fired WHERE key = ?", (_key_text(key),)
            ).fetchone()
            if found is not None:
                fired[key] = FiredDigest.from_json(bytes(found[0]))
        planned = plan_postbacks(rows, fired, self.rule_of, now)
        if planned.is_empty:
            return 0
        conn.executemany(
            "INSERT OR REPLACE INTO outbound_fired (key, value) VALUES (?, ?)",
            [(_key_text(k), d.to_json()) for k, d in planned.digests.items()],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO outbound_due (id, project, goal_id, event, url, body, created_at, next_at,"
            " status, method, link_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    d.delivery_id,
                    d.project,
                    d.goal_id,
                    POSTBACK_EVENT,
                    d.url,
                    d.body,
                    d.created_at.timestamp(),
                    d.next_at.timestamp(),
                    DeliveryStatus.PENDING.value,
                    d.method.value,
                    d.link_id,
                )
                for d in planned.due
            ],
        )
        return len(planned.due)


@dataclass(frozen=True, slots=True)
class DueRow:
    id: str
    project: str
    goal_id: str
    url: str
    body: bytes
    next_at: float | None
    status: str
    step: int
    attempts: int
    event: str = ""
    method: str = "POST"


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


class DeliveryLoop:
    """Sends due goal webhooks from ``outbound_due`` (see the module doc). One per process."""

    def __init__(
        self,
        path: Path,
        goal_of: GoalOf,
        sender: OutboundSender,
        schedule: Schedule,
        *,
        poll_s: float = 0.2,
        batch: int = 200,
        rng: Rng = random.random,
        clock: Callable[[], datetime] | None = None,
    ):
        self.path = Path(path)
        self.goal_of = goal_of
        self.sender = sender
        self.schedule = schedule
        self.poll_s = poll_s
        self.batch = batch
        self.rng = rng
        self.clock = clock or (lambda: datetime.now(UTC))
        self.wake = asyncio.Event()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbound-db")
        self._conn: sqlite3.Connection | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # -- database (on the loop's own thread and connection)

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
            "SELECT id, project, goal_id, url, body, next_at, status, step, attempts, event, method"
            " FROM outbound_due"
            " WHERE next_at IS NOT NULL AND next_at <= ? AND status IN ('pending', 'failed')"
            " ORDER BY next_at LIMIT ?",
            (now, limit),
        ).fetchall()
        return [
            DueRow(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7], r[8], r[9], r[10]) for r in rows
        ]

    def _write(
        self, row_id: str, new: Delivery, at: float, status: int | None, error: str | None, dead: str | None
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
                row_id,
            ),
        )

    def _close_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _in_db(self, fn: Callable[..., object], *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    # -- lifecycle

    async def start(self) -> None:
        await self._in_db(self._open)
        self._task = asyncio.create_task(self.run(), name="outbound-delivery")

    async def close(self) -> None:
        self._stopping = True
        self.wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        await self.sender.close()
        await self._in_db(self._close_db)
        self._db.shutdown(wait=True)

    async def run(self) -> None:
        while not self._stopping:
            try:
                found = await self._in_db(self._due, self.clock().timestamp(), self.batch)
                assert isinstance(found, list)
                for row in found:
                    if row.id not in self._in_flight:
                        self._in_flight[row.id] = asyncio.create_task(self._deliver(row))
            except Exception:  # a busy or full database: the due rows stay, the next poll retries
                log.exception("outbound: reading due deliveries failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.poll_s)

    async def _deliver(self, row: DueRow) -> None:
        try:
            await self._attempt(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbound: delivery %s failed unexpectedly; it stays due", row.id)
            await asyncio.sleep(1.0)  # no hot loop on a persistent fault
        finally:
            self._in_flight.pop(row.id, None)

    async def _attempt(self, row: DueRow) -> None:
        current = Delivery(DeliveryStatus(row.status), _dt(row.next_at), row.step, row.attempts)
        if row.event == POSTBACK_EVENT:  # sent exactly as planned, unsigned
            headers = {"Content-Type": FORM_CONTENT_TYPE} if row.method == "POST" else {}
            await self._send(row, current, OutboundRequest(row.method, row.url, headers, row.body))
            return
        now = self.clock()
        goal = self.goal_of(row.project, row.goal_id)
        ring = goal.key_ring() if goal is not None else None
        if ring is None:  # the goal was deleted (or lost its key ring): nothing can sign it
            dead = Delivery(DeliveryStatus.DEAD, None, current.step, current.attempts)
            await self._in_db(
                self._write, row.id, dead, now.timestamp(), None, "goal or its signing key is gone", "no_goal"
            )
            return
        headers = {
            "Content-Type": "application/json",
            **signed_headers(row.id, int(now.timestamp()), row.body, ring.signing_secrets(now)),
        }
        await self._send(row, current, OutboundRequest("POST", row.url, headers, row.body))

    async def _send(self, row: DueRow, current: Delivery, request: OutboundRequest) -> None:
        result = await self.sender.attempt(request)
        after = self.clock()
        new, dead_reason = self._next(current, result, after)
        error = result.error or (None if result.reason is None else result.reason.value)
        await self._in_db(self._write, row.id, new, after.timestamp(), result.status, error, dead_reason)
        if new.status is not DeliveryStatus.DELIVERED:
            log.info(
                "outbound: delivery %s attempt %d: %s (%s)",
                row.id,
                new.attempts,
                new.status.value,
                error,
            )

    def _next(self, current: Delivery, result: AttemptResult, now: datetime) -> tuple[Delivery, str | None]:
        if result.refused is not None and not result.refusal_retriable:  # the URL itself is refused
            dead = Delivery(
                DeliveryStatus.DEAD, None, current.step + 1, current.attempts + 1, result.reason, None
            )
            return dead, "refused"
        new = self.schedule.after_attempt(current, result.classified, now, self.rng)
        return new, None if new.dead_reason is None else new.dead_reason.value
