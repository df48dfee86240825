"""Alert rules in the embedded mode (issue 14): the pure engine (processors.alerts) driven by each batch
and by idle ticks, its state and its notifications committed with the batch.

:meth:`AlertStage.stage` runs inside the batch protocol on the state database's connection, like the
outbound planning: the batch's events and conversion rows are observed, the engine advances, and in
the transaction the batch commits:

- each project's changed snapshot goes to ``alert_state``;
- each notifying transition (firing, resolved) becomes due deliveries in ``outbound_due`` (the rule's
  signed webhook: event ``alert.firing`` / ``alert.resolved``; its Slack-compatible body: event
  ``alert.slack``, unsigned), keyed by ids derived from the transition id (``INSERT OR IGNORE``);
- and a public stream message in ``stream_events`` (``com.trackpipe.alert.firing`` / ``.resolved``).

A failed batch is rolled back and the engine reloads its snapshots (:meth:`discard`), so a replay
starts from the committed state and yields the same transition ids. :meth:`tick` advances stream time
while no input arrives (rules of a silent project still go pending, fire and resolve) and commits on
its own; the runner calls it only between batches. Rules are read from the configuration at every
call: a rule created, edited, disabled or deleted takes effect at the next batch or tick.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from processors.alerts.engine import AlertEngine
from processors.alerts.notify import cloudevent, slack_body, stream_type, webhook_body
from processors.runtime.sqlite_state import SqliteState, StateError
from schemas.alerts import AlertRule, AlertState, AlertTransition
from schemas.events import Event
from schemas.rows import Conversion
from sinks.outbound.schedule import DeliveryStatus
from trackpipe.outbound.loop import SLACK_EVENT

log = logging.getLogger(__name__)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alert_state (project TEXT PRIMARY KEY, snapshot BLOB NOT NULL) WITHOUT ROWID"
)
ALERT_EVENTS = {AlertState.FIRING: "alert.firing", AlertState.RESOLVED: "alert.resolved"}


def slack_id(transition_id: str) -> str:
    return "slk_" + hashlib.sha256(transition_id.encode()).hexdigest()[:32]


class AlertStage:
    def __init__(
        self,
        state: SqliteState,
        rules: Callable[[], Iterable[AlertRule]],
        clock: Callable[[], datetime] | None = None,
    ):
        self.state = state
        self.rules = rules
        self.clock = clock or (lambda: datetime.now(UTC))
        self.engine = AlertEngine()
        self._rules_seen: tuple[AlertRule, ...] | None = None
        self._loaded = False
        with state.lock:
            state.conn.execute(SCHEMA)
            state.conn.commit()

    def _ensure_loaded(self) -> None:
        """Rules first, then the snapshots (a snapshot of a project without rules is not kept): on the
        first call, once the configuration is loaded (the runner starts after it)."""
        if not self._loaded:
            self._refresh_rules()
            self._restore()
            self._loaded = True

    def _refresh_rules(self) -> None:
        current = tuple(sorted(self.rules(), key=lambda r: r.id))
        if current != self._rules_seen:
            self.engine.set_rules(current)
            self._rules_seen = current

    def _restore(self) -> None:
        with self.state.lock:
            rows = self.state.conn.execute("SELECT project, snapshot FROM alert_state").fetchall()
        for project, snapshot in rows:
            self.engine.restore(project, bytes(snapshot))
        self.engine.clear_dirty()

    def stage(self, events: Sequence[Event], conversions: Sequence[Conversion]) -> list[AlertTransition]:
        """Observe a batch and write what follows into the open transaction (the batch commit makes it
        durable). Returns the transitions (all of them: the dashboard shows pending too)."""
        self._ensure_loaded()
        self._refresh_rules()
        self.engine.observe(events, conversions)
        return self._write(self.engine.advance(int(self.clock().timestamp() * 1000)))

    def tick(self) -> list[AlertTransition]:
        """Advance to now with no input and commit (called by the runner between batches only)."""
        self._ensure_loaded()
        self._refresh_rules()
        transitions = self.engine.advance(int(self.clock().timestamp() * 1000))
        if not transitions and not self.engine.dirty():
            return []
        self._write(transitions)
        with self.state.lock:
            try:
                self.state.conn.commit()
            except sqlite3.Error as exc:
                self.state.conn.rollback()
                self.discard()
                raise StateError(f"alert tick not committed: {exc}", retriable=True) from exc
        return transitions

    def discard(self) -> None:
        """The batch was rolled back: reload the committed snapshots."""
        self.engine = AlertEngine()
        self._rules_seen = None
        self._loaded = False

    def _write(self, transitions: list[AlertTransition]) -> list[AlertTransition]:
        conn = self.state.conn
        now = self.clock().timestamp()
        rules = {r.id: r for r in self._rules_seen or ()}
        with self.state.lock:
            try:
                for project in self.engine.dirty():
                    conn.execute(
                        "INSERT OR REPLACE INTO alert_state (project, snapshot) VALUES (?, ?)",
                        (project, self.engine.snapshot(project)),
                    )
                for t in transitions:
                    rule = rules.get(t.rule_id)
                    if rule is None or not t.notify or t.to_state not in ALERT_EVENTS:
                        continue
                    self._notify(conn, t, rule, now)
            except sqlite3.OperationalError as exc:
                raise StateError(f"alert state not written: {exc}", retriable=True) from exc
        self.engine.clear_dirty()
        for t in transitions:
            log.info("alert %s (%s): %s -> %s at %s", t.rule_id, t.project, t.from_state, t.to_state, t.at)
        return transitions

    def _notify(self, conn: sqlite3.Connection, t: AlertTransition, rule: AlertRule, now: float) -> None:
        due = []
        channels = rule.channels
        if channels.webhook_url:
            due.append((t.id, ALERT_EVENTS[t.to_state], str(channels.webhook_url), webhook_body(t, rule)))
        if channels.slack_url:
            due.append((slack_id(t.id), SLACK_EVENT, str(channels.slack_url), slack_body(t, rule)))
        conn.executemany(
            "INSERT OR IGNORE INTO outbound_due (id, project, goal_id, event, url, body, created_at, next_at,"
            " status, method, link_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'POST', '')",
            [
                (i, t.project, rule.id, event, url, body, now, now, DeliveryStatus.PENDING.value)
                for i, event, url, body in due
            ],
        )
        conn.execute(
            "INSERT OR IGNORE INTO stream_events (id, project, type, body, at) VALUES (?, ?, ?, ?, ?)",
            (t.id, t.project, stream_type(t).value, cloudevent(t, rule), now),
        )
