"""The delivery log's rows: what an attempt's result becomes, and the Arrow table the backends insert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sinks.outbound.delivery_log import (
    BODY_KEEP_BYTES,
    SCHEMA,
    AttemptRow,
    Planned,
    attempt_row,
    attempts_table,
    kept_body,
)
from sinks.outbound.schedule import (
    Classified,
    DeadReason,
    Delivery,
    DeliveryStatus,
    FailureReason,
    Outcome,
)
from sinks.outbound.sender import AttemptResult

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOOK = Planned(
    "msg_1", "p1", "g1", "", "conversion.tracked", "POST", "https://hooks.example/h", 1_772_000_000.5
)
POSTBACK = Planned(
    "pb_1", "p1", "g1", "L1", "postback", "GET", "https://ts.example/pb?cid=1", 1_772_000_000.0
)
FAILED = Classified(Outcome.FAILURE, FailureReason.SERVER_ERROR)


def test_a_failed_attempt_keeps_status_latency_error_and_a_kilobyte_of_the_answer() -> None:
    result = AttemptResult(FAILED, status=503, latency_s=0.1234, body=b"x" * 2000, body_truncated=True)
    new = Delivery(DeliveryStatus.FAILED, T0 + timedelta(seconds=5), 1, 1, FailureReason.SERVER_ERROR)
    row = attempt_row(HOOK, new, result, T0, None)
    assert row.kind == "webhook" and row.delivery_id == "msg_1" and row.attempt == 1
    assert (row.status, row.status_code, row.latency_ms) == ("failed", 503, 123)
    assert row.error == "server_error" and row.dead_reason == ""
    assert row.response_body == "x" * BODY_KEEP_BYTES
    assert row.next_at == T0 + timedelta(seconds=5)
    assert row.created_at == datetime.fromtimestamp(1_772_000_000.5, UTC)


def test_a_transport_failure_has_no_status_code_and_its_error_text() -> None:
    result = AttemptResult(Classified(Outcome.FAILURE, FailureReason.CONNECT), error="connection refused")
    new = Delivery(DeliveryStatus.DEAD, None, 2, 2, FailureReason.CONNECT, DeadReason.EXHAUSTED)
    row = attempt_row(POSTBACK, new, result, T0, "exhausted")
    assert row.kind == "postback" and row.method == "GET" and row.link_id == "L1"
    assert (row.status, row.status_code, row.error, row.dead_reason) == (
        "dead",
        0,
        "connection refused",
        "exhausted",
    )
    assert row.next_at is None


def test_a_decision_without_an_attempt_is_logged_too() -> None:
    new = Delivery(DeliveryStatus.DEAD, None, 0, 0)
    row = attempt_row(HOOK, new, None, T0, "no_goal")
    assert (row.status, row.status_code, row.latency_ms, row.response_body) == ("dead", 0, 0, "")
    assert row.dead_reason == "no_goal" and "no_goal" in row.error


def test_kept_body_cuts_and_replaces_bad_utf8() -> None:
    assert kept_body("é".encode() * 600).startswith("é")
    assert len(kept_body("é".encode() * 600).encode()) <= BODY_KEEP_BYTES + 2
    assert kept_body(b"\xff ok") == "\ufffd ok"


def test_the_arrow_table_has_the_table_columns_and_values() -> None:
    ok = AttemptResult(Classified(Outcome.SUCCESS, None), status=204, latency_s=0.01)
    rows = [
        attempt_row(HOOK, Delivery(DeliveryStatus.DELIVERED, None, 1, 1), ok, T0, None),
        attempt_row(
            POSTBACK, Delivery(DeliveryStatus.FAILED, T0, 1, 1), AttemptResult(FAILED, status=500), T0, None
        ),
    ]
    table = attempts_table(rows)
    assert table.schema == SCHEMA and table.num_rows == 2
    assert table.column("status_code").to_pylist() == [204, 500]
    assert table.column("next_at").to_pylist() == [None, T0]
    assert table.column("kind").to_pylist() == ["webhook", "postback"]
    assert list(table.column_names) == list(AttemptRow.__dataclass_fields__)
    assert attempts_table([]).num_rows == 0
