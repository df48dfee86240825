"""``ClickHouseSink.write_batch``: what it hands to its backend, in which order, and how a failed insert
stops the batch. The backend here records the calls (the real inserts are covered by
tests/integration/test_processing_sink.py against a ClickHouse server)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from schemas.events import Event, EventType
from schemas.rows import Conversion, ExposureRow, ProcessedBatch, SessionRow
from sinks.arrow_rows import conversions_table, events_table, exposures_table, sessions_table
from sinks.backend import BackendError
from sinks.clickhouse_sink import ClickHouseSink

T0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


class RecordingBackend:
    database = "db"

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.inserts: list[tuple[str, pa.Table, str | None]] = []
        self.threads: set[int] = set()

    def insert_arrow(self, table: str, data: pa.Table, *, dedup_token: str | None = None) -> None:
        self.threads.add(threading.get_ident())
        if table == self.fail_on:
            raise BackendError(f"insert into {table} failed", retriable=True, code=252)
        self.inserts.append((table, data, dedup_token))

    def command(self, sql: str, params: Any = None) -> None:
        raise AssertionError("not used by the sink")

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        raise AssertionError("not used by the sink")

    def server_version(self) -> str:
        return "0"

    def close(self) -> None:
        pass


def batch(*, conversions: bool = True, sessions: bool = True, exposures: bool = True) -> ProcessedBatch:
    events = tuple(
        Event(
            event_id=f"e{i}",
            type=EventType.TRANSACTION,
            received_at=T0,
            occurred_at=T0,
            account_id="a",
            project_id="p",
            visitor_id="v",
            revenue=Decimal("9.99"),
        )
        for i in range(3)
    )
    conversion = Conversion(
        project_id="p",
        goal_id="g",
        conversion_key="k",
        account_id="a",
        visitor_id="v",
        event_id="e0",
        event_type="transaction",
        occurred_at=T0,
        received_at=T0,
        revenue=Decimal("9.99"),
        currency="",
        products_count=1,
        transaction_id="t",
        experiment_ids=(),
        variation_ids=(),
        version=1,
    )
    session = SessionRow(
        project_id="p",
        account_id="a",
        visitor_id="v",
        session_id="s",
        started_at=T0,
        ended_at=T0,
        events=3,
        is_deleted=False,
        version=1,
    )
    exposure = ExposureRow(
        project_id="p",
        account_id="a",
        experiment_id="x",
        variation_id="y",
        visitor_id="v",
        first_seen_at=T0,
        version=1,
    )
    return ProcessedBatch(
        events=events,
        session_ids=("s", "s", "s"),
        conversions=(conversion,) if conversions else (),
        sessions=(session,) if sessions else (),
        exposures=(exposure,) if exposures else (),
    )


def test_every_table_is_inserted_in_order_with_its_token() -> None:
    b = batch()
    backend = RecordingBackend()
    sink = ClickHouseSink(backend)
    sink.write_batch(b, "src|0:10-19")
    assert [(t, tok) for t, _, tok in backend.inserts] == [
        ("events_raw", "src|0:10-19/events"),
        ("conversions", "src|0:10-19/conversions"),
        ("sessions", "src|0:10-19/sessions"),
        ("variation_exposures", "src|0:10-19/exposures"),
    ]
    expected = [
        events_table(b.events, b.session_ids),
        conversions_table(b.conversions),
        sessions_table(b.sessions),
        exposures_table(b.exposures),
    ]
    assert all(data.equals(e) for (_, data, _), e in zip(backend.inserts, expected, strict=True))
    assert sink.rows_written == 3 + 1 + 1 + 1
    assert threading.get_ident() not in backend.threads  # inserted by the helper thread


def test_a_batch_of_one_table_is_inserted_by_the_calling_thread() -> None:
    backend = RecordingBackend()
    sink = ClickHouseSink(backend)
    sink.write_batch(batch(conversions=False, sessions=False, exposures=False), "t")
    assert [t for t, _, _ in backend.inserts] == ["events_raw"]
    assert backend.threads == {threading.get_ident()}
    sink.write_batch(ProcessedBatch(), "empty")  # nothing to write: no insert at all
    assert len(backend.inserts) == 1 and sink.rows_written == 3


@pytest.mark.parametrize("failing", ["events_raw", "conversions", "sessions", "variation_exposures"])
def test_a_failed_insert_stops_the_batch_and_is_raised(failing: str) -> None:
    order = ["events_raw", "conversions", "sessions", "variation_exposures"]
    backend = RecordingBackend(fail_on=failing)
    sink = ClickHouseSink(backend)
    with pytest.raises(BackendError, match=f"insert into {failing} failed") as err:
        sink.write_batch(batch(), "t")
    assert err.value.retriable
    assert [t for t, _, _ in backend.inserts] == order[: order.index(failing)]
    assert sink.rows_written == 0


def test_mismatched_session_ids_fail_before_any_insert() -> None:
    backend = RecordingBackend()
    b = batch().model_copy(update={"session_ids": ("s",)})
    with pytest.raises(ValueError, match="1 session ids for 3 events"):
        ClickHouseSink(backend).write_batch(b, "t")
    assert backend.inserts == []
