"""Outbound planning in the embedded mode: goal webhooks and S2S postbacks planned with each batch (issue 13).

Planning (:class:`OutboundPlanning`) runs inside the batch protocol, on the state database's connection,
before the batch commits: the digests of the batch's conversions are read, :func:`planner.plan` decides,
and the changed digests (``outbound_digests``) and the due deliveries (``outbound_due``, key = the
webhook-id, ``INSERT OR IGNORE``) are written in the transaction that ``SqliteState.commit`` closes with
the stage state and the log offset. A failed batch is rolled back with it (``discard``); a batch replayed
after a crash plans the same ids and bodies, and an id already stored is kept as it is.

Sending is :class:`trackpipe.outbound.loop.DeliveryLoop` over
:class:`trackpipe.outbound.sqlite_store.SqliteDueStore` (its own connection to the same file).
Delivered and dead deliveries stay in the table.

Traffic-source S2S postbacks ride the same tables: planned with the batch (:func:`planner.plan_postbacks`,
their per-(conversion, link) digests in ``outbound_fired``), stored in ``outbound_due`` with event
``postback``, the link and the rendered method, URL and body, and sent by the same loop exactly as
stored, with no signature headers (a POST carries its form body).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from processors.runtime.sqlite_state import SqliteState, StateError
from schemas.config import Goal, Link
from schemas.outbound.postbacks import TemplateError
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
from sinks.outbound.schedule import DeliveryStatus
from sinks.outbound.templates import FiredDigest, PostbackRule
from sinks.stream.cloudevents import plan_stream
from trackpipe.outbound.loop import POSTBACK_EVENT

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
CREATE TABLE IF NOT EXISTS stream_digests (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS stream_events_project ON stream_events (project, seq);
"""
# Columns added to ``outbound_due`` after its first release (a state file from before gets them).
ADDED_COLUMNS = {
    "method": "TEXT NOT NULL DEFAULT 'POST'",
    "link_id": "TEXT NOT NULL DEFAULT ''",
}

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
                self._stage_stream(conn, rows, now)
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

    def _stage_stream(self, conn: sqlite3.Connection, rows: Sequence[Conversion], now: datetime) -> None:
        """The public stream's messages of ``rows`` (issue 14), numbered by ``stream_events.seq`` in
        commit order; a replayed batch publishes nothing again (digests, and ids are unique)."""
        digests: dict[Key, Digest] = {}
        for key in keys_of(rows):
            found = conn.execute(
                "SELECT value FROM stream_digests WHERE key = ?", (_key_text(key),)
            ).fetchone()
            if found is not None:
                digests[key] = Digest.from_json(bytes(found[0]))
        planned = plan_stream(rows, digests, now)
        if not planned.digests:
            return
        conn.executemany(
            "INSERT OR REPLACE INTO stream_digests (key, value) VALUES (?, ?)",
            [(_key_text(k), d.to_json()) for k, d in planned.digests.items()],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO stream_events (id, project, type, body, at) VALUES (?, ?, ?, ?, ?)",
            [(m.id, m.project, m.type.value, m.body, now.timestamp()) for m in planned.messages],
        )

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
