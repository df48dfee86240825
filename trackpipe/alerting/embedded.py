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

import asyncio
import hashlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from processors.alerts.engine import AlertEngine
from processors.alerts.notify import cloudevent, slack_body, stream_type, webhook_body
from processors.runtime.sqlite_state import SqliteState, StateError
from schemas.alerts import AlertRule, AlertState, AlertStatus, AlertTransition, TransitionSeen
from schemas.events import Event
from schemas.rows import Conversion
from sinks.outbound.schedule import DeliveryStatus
from trackpipe.outbound.loop import SLACK_EVENT

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_state (project TEXT PRIMARY KEY, snapshot BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_transitions (
    id TEXT NOT NULL,
    to_state TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    from_state TEXT NOT NULL,
    at REAL NOT NULL,
    value REAL,
    threshold REAL,
    notify INTEGER NOT NULL,
    PRIMARY KEY (id, to_state, notify)
);
CREATE INDEX IF NOT EXISTS alert_transitions_rule ON alert_transitions (rule_id, at);
"""
KEEP_TRANSITIONS = 50  # per rule, for the admin API and the dashboard
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
            state.conn.executescript(SCHEMA)
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
                self._record(conn, transitions)
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

    def _record(self, conn: sqlite3.Connection, transitions: list[AlertTransition]) -> None:
        """Every transition (pending ones too) for the admin API; the last KEEP_TRANSITIONS per rule."""
        if not transitions:
            return
        conn.executemany(
            "INSERT OR IGNORE INTO alert_transitions (id, to_state, rule_id, from_state, at, value,"
            " threshold, notify) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (t.id, t.to_state.value, t.rule_id, t.from_state.value, t.at.timestamp(), t.value,
                 t.threshold, int(t.notify))
                for t in transitions
            ],
        )  # fmt: skip
        for rule_id in {t.rule_id for t in transitions}:
            conn.execute(
                "DELETE FROM alert_transitions WHERE rule_id = ? AND rowid NOT IN (SELECT rowid FROM"
                " alert_transitions WHERE rule_id = ? ORDER BY at DESC LIMIT ?)",
                (rule_id, rule_id, KEEP_TRANSITIONS),
            )

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


class EmbeddedAlertStates:
    """The admin API's view of the rules evaluated by this process: the engine's current state and the
    recorded transitions (read on a connection of its own)."""

    def __init__(self, stage: Callable[[], AlertStage | None], path: Path, recent: int = 10):
        self.stage = stage
        self.path = Path(path)
        self.recent = recent
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-states")

    def _transitions(self, rule_ids: Sequence[str]) -> dict[str, list[TransitionSeen]]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            out: dict[str, list[TransitionSeen]] = {}
            for rule_id in rule_ids:
                rows = conn.execute(
                    "SELECT id, from_state, to_state, at, value, threshold, notify FROM alert_transitions"
                    " WHERE rule_id = ? ORDER BY at DESC, rowid DESC LIMIT ?",
                    (rule_id, self.recent),
                ).fetchall()
                out[rule_id] = [
                    TransitionSeen(
                        id=r[0], from_state=r[1], to_state=r[2], at=datetime.fromtimestamp(r[3], UTC),
                        value=r[4], threshold=r[5], notified=bool(r[6]),
                    )
                    for r in rows
                ]  # fmt: skip
            return out
        except sqlite3.OperationalError:  # not created yet
            return {}
        finally:
            conn.close()

    async def status(self, rule_ids: Sequence[str]) -> dict[str, AlertStatus]:
        stage = self.stage()
        if stage is None:
            return {}
        seen = await asyncio.get_running_loop().run_in_executor(self._db, self._transitions, list(rule_ids))
        out: dict[str, AlertStatus] = {}
        seen_rules = {r.id: r for r in stage._rules_seen or ()}
        for rule_id in rule_ids:  # a rule not evaluated yet (just created, or disabled) is normal
            rule = seen_rules.get(rule_id)
            st = None if rule is None else stage.engine.rule_state(rule)
            episode = (
                None
                if st is None or st.episode_ms is None
                else datetime.fromtimestamp(st.episode_ms / 1000, UTC)
            )
            out[rule_id] = AlertStatus(
                state=AlertState.NORMAL if st is None else st.state,
                episode_started_at=episode,
                transitions=seen.get(rule_id, []),
            )
        return out
