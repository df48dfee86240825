"""S2S postbacks staged in the state database (``OutboundPlanning``): planned with the batch's
transaction, kept apart from the webhook digests, and a state file from before gets the new columns."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from processors.runtime.sqlite_state import SqliteState
from schemas.config import Link
from schemas.outbound.ssrf import AllowList
from sinks.outbound.test_events import T0, conv
from trackpipe.outbound import OutboundPlanning, rule_lookup

NOW = datetime(2026, 1, 21, 12, 5, tzinfo=UTC)
LINK = Link(
    id="456",
    project="p1",
    url="https://shop.example/",
    created_at=T0,
    updated_at=T0,
    postback_template="https://src.example/pb?subid={external_id}&status={status}",
)


def _planning(path: Path) -> tuple[SqliteState, OutboundPlanning]:
    state = SqliteState(path)
    rule_of = rule_lookup(lambda lid: LINK if lid == LINK.id else None, AllowList())
    return state, OutboundPlanning(state, lambda project, gid: None, lambda: NOW, rule_of=rule_of)


def _due(path: Path) -> list[tuple[str, str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, event, method, url FROM outbound_due").fetchall()
    finally:
        conn.close()


def test_postbacks_staged_with_the_batch_once(tmp_path):
    path = tmp_path / "state.sqlite"
    old = sqlite3.connect(path)  # the first release's table, without method and link_id
    old.executescript(
        "CREATE TABLE outbound_due (id TEXT PRIMARY KEY, project TEXT NOT NULL, goal_id TEXT NOT NULL,"
        " event TEXT NOT NULL, url TEXT NOT NULL, body BLOB NOT NULL, created_at REAL NOT NULL,"
        " next_at REAL, status TEXT NOT NULL, step INTEGER NOT NULL DEFAULT 0,"
        " attempts INTEGER NOT NULL DEFAULT 0, last_attempt_at REAL, last_status INTEGER,"
        " last_error TEXT, dead_reason TEXT);"
    )
    old.close()
    state, planning = _planning(path)
    rows = [conv(1, attributed_external_click_id="XYZ"), conv(1, attributed_external_click_id="XYZ")]
    assert planning.stage(rows) == 1
    state.rollback()  # a failed batch forgets them
    assert _due(path) == []
    assert planning.stage(rows) == 1
    state.commit(1)
    [(pid, event, method, url)] = _due(path)
    assert pid.startswith("pb_") and (event, method) == ("postback", "GET")
    assert url == "https://src.example/pb?subid=XYZ&status=approved"
    assert planning.stage(rows) == 0  # replayed after the commit: nothing new
    state.commit(2)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM outbound_fired").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM outbound_digests").fetchone() == (0,)
    conn.close()
    state.close()
