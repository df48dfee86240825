"""The delivery log in chdb and on a ClickHouse server: rows written as the observer writes them, read
back as the admin API reads them (latest state per delivery, filters, attempts, the bulk retry's ids)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.outbound.deliveries import DeliveriesQuery, RetryFilter
from sinks.backend import ClickHouseBackend
from sinks.chdb_backend import ChdbBackend
from sinks.migrate import migrate
from sinks.outbound import delivery_reads
from sinks.outbound.delivery_log import TABLE, Planned, attempt_row, attempts_table
from sinks.outbound.schedule import Classified, Delivery, DeliveryStatus, FailureReason, Outcome
from sinks.outbound.sender import AttemptResult
from sinks.server_backend import ServerBackend

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAIL = AttemptResult(Classified(Outcome.FAILURE, FailureReason.SERVER_ERROR), status=500, body=b"no")
OK = AttemptResult(Classified(Outcome.SUCCESS, None), status=200, body=b"ok")


@pytest.fixture(params=["chdb", "server"])
def backend(request: pytest.FixtureRequest, chdb_path: Path) -> Iterator[ClickHouseBackend]:
    if request.param == "chdb":
        with ChdbBackend(str(chdb_path), f"dlog_{uuid.uuid4().hex}") as b:
            migrate(b)
            yield b
        return
    server = request.getfixturevalue("clickhouse_server")
    database = request.getfixturevalue("ch_database")
    with ServerBackend(server.host, server.http_port, database) as s:
        migrate(s)
        yield s


def _planned(i: str, event: str = "conversion.tracked", link: str = "", project: str = "p1") -> Planned:
    return Planned(i, project, "g1", link, event, "POST", f"https://h.example/{i}", T0.timestamp())


def test_latest_state_filters_and_attempts(backend: ClickHouseBackend) -> None:
    a, b, c = _planned("msg_a"), _planned("pb_b", "postback", "L1"), _planned("msg_c", project="p2")
    t = [T0 + timedelta(seconds=s) for s in range(6)]
    rows = [
        attempt_row(a, Delivery(DeliveryStatus.FAILED, t[1], 1, 1), FAIL, t[0], None),
        attempt_row(a, Delivery(DeliveryStatus.DEAD, None, 2, 2), FAIL, t[1], "exhausted"),
        attempt_row(b, Delivery(DeliveryStatus.FAILED, t[3], 1, 1), FAIL, t[2], None),
        attempt_row(b, Delivery(DeliveryStatus.DELIVERED, None, 2, 2), OK, t[3], None),
        attempt_row(c, Delivery(DeliveryStatus.FAILED, t[5], 1, 1), FAIL, t[4], None),
    ]
    backend.insert_arrow(TABLE, attempts_table(rows), dedup_token="t1")
    backend.insert_arrow(TABLE, attempts_table(rows), dedup_token="t1")  # a retried insert: stored once

    every = delivery_reads.deliveries(backend, DeliveriesQuery())
    assert [d.id for d in every.deliveries] == ["msg_c", "pb_b", "msg_a"]  # latest attempt first
    dead = every.deliveries[2]
    assert (dead.status, dead.attempts, dead.dead_reason, dead.next_at) == ("dead", 2, "exhausted", None)
    assert [x.status for x in dead.attempts_log] == ["failed", "dead"]
    assert dead.attempts_log[0].next_at == t[1] and dead.attempts_log[0].response_body == "no"
    assert dead.created_at == T0 and dead.last_attempt_at == t[1]
    assert every.deliveries[0].next_at == t[5]

    def ids(**kw: object) -> list[str]:
        return [
            d.id for d in delivery_reads.deliveries(backend, DeliveriesQuery.model_validate(kw)).deliveries
        ]

    assert ids(status="delivered") == ["pb_b"]
    assert ids(link="L1") == ["pb_b"] and ids(project="p2") == ["msg_c"] and ids(goal="nope") == []
    assert ids(since=t[3]) == ["msg_c", "pb_b"] and ids(limit=1) == ["msg_c"]
    assert delivery_reads.deliveries(backend, DeliveriesQuery(), ["msg_a"]).deliveries[0].id == "msg_a"
    assert delivery_reads.deliveries(backend, DeliveriesQuery(), ["x'); DROP"]).deliveries == []

    assert delivery_reads.retriable(backend, RetryFilter()) == ["msg_c", "msg_a"]
    assert delivery_reads.retriable(backend, RetryFilter(status="dead")) == ["msg_a"]
    assert delivery_reads.retriable(backend, RetryFilter(project="p1")) == ["msg_a"]
    assert delivery_reads.retriable(backend, RetryFilter(limit=1)) == ["msg_c"]
