"""Rows as columns (decision 155): a batch written with the processors' session and exposure columns
stores exactly what the same batch written as row objects stores, in a real ClickHouse server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bench import stream
from processors.pipeline import ConversionPipeline
from schemas.events import Event, EventType, ExperimentVariation, Segment
from schemas.rows import ColumnRows, ProcessedBatch
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.server_backend import ServerBackend
from tests.scenario import event

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
TABLES = ("events_raw", "conversions", "sessions", "variation_exposures")


def _events() -> list[Event]:
    """The bench's recorded stream plus the cases a stream rarely has: unicode, empty and missing
    values, decimals with more places than the column, times with milliseconds and microseconds, merged
    sessions (a deleted session row) and an exposure seen earlier later in the batch (two versions)."""
    at = T0 + timedelta(milliseconds=123)
    exp = (ExperimentVariation(experiment_id="Э-1", variation_id="变体 A"),)
    seg = Segment(browser="Firefox ü", devices=("desk", ""), country=None, returning=True, custom=("ß",))
    visitor, p = "visitor-ñ-🙂", "proj-é"
    odd = [
        event(EventType.VIEW_EXP, at + timedelta(minutes=10), visitor, p, experiments=exp, segment=seg),
        event(EventType.VIEW_EXP, at, visitor, p, experiments=exp, user_agent="", currency=None),
        event(
            EventType.TRANSACTION,
            at + timedelta(minutes=40, microseconds=456789),
            visitor,
            p,
            goal_ids=("achat", ""),
            revenue=Decimal("12.34567"),
            currency="€UR",
            transaction_id="T-ü",
            attributes={"clé": "valeur", "": ""},
        ),
        # between the two sessions above (30-minute gap): they merge, one session row is deleted
        event(EventType.HIT_GOAL, at + timedelta(minutes=25), visitor, p, goal_ids=("inscription",)),
        event(EventType.HIT_GOAL, at + timedelta(seconds=1), "", p, goal_ids=("g",), revenue=Decimal(0)),
    ]
    return stream.recorded_events(600, seed=7) + odd


def _stored(backend: ServerBackend, table: str) -> list[tuple[Any, ...]]:
    return backend.query(f"SELECT * FROM {table} ORDER BY ALL")


@pytest.fixture
def backends(clickhouse_server: Any, ch_database: str) -> Iterator[tuple[ServerBackend, ServerBackend]]:
    host, port = clickhouse_server.host, clickhouse_server.http_port
    rows_db = f"{ch_database}_rows_{uuid.uuid4().hex[:6]}"
    pair = (ServerBackend(host, port, ch_database), ServerBackend(host, port, rows_db))
    try:
        yield pair
    finally:
        pair[0].command(f"DROP DATABASE IF EXISTS `{rows_db}`")
        for b in pair:
            b.close()


def test_columns_and_rows_store_the_same(backends: tuple[ServerBackend, ServerBackend]) -> None:
    columns_db, rows_db = backends
    for b in backends:
        migrate(b)
    batch = ConversionPipeline().process_events(_events()).batch
    assert isinstance(batch.sessions, ColumnRows) and isinstance(batch.exposures, ColumnRows)
    as_rows = ProcessedBatch(
        events=batch.events,
        session_ids=batch.session_ids,
        conversions=batch.conversions,
        sessions=tuple(batch.sessions),
        exposures=tuple(batch.exposures),
    )
    assert isinstance(as_rows.sessions, tuple) and isinstance(as_rows.exposures, tuple)
    # the columns hand-off must be taken before any row is read (rows read later are built lazily)
    fresh = batch.model_copy(
        update={
            "sessions": type(batch.sessions)(batch.sessions.columns),
            "exposures": type(batch.exposures)(batch.exposures.columns),
        }
    )
    ClickHouseSink(columns_db).write_batch(fresh, "t/0")
    ClickHouseSink(rows_db).write_batch(as_rows, "t/0")
    stored = {t: _stored(columns_db, t) for t in TABLES}
    assert stored == {t: _stored(rows_db, t) for t in TABLES}
    # the batch holds what the test is about
    assert len(stored["sessions"]) == len(batch.sessions) > 100
    assert any(r[7] == 1 for r in stored["sessions"])  # a deleted (merged) session row
    exposures = [r for r in stored["variation_exposures"] if r[0] == "proj-é"]
    assert [(r[2], r[3], r[5]) for r in exposures] == [("Э-1", "变体 A", T0 + timedelta(milliseconds=123))]
    assert any(r[5].microsecond == 123000 for r in stored["sessions"] if r[0] == "proj-é")
