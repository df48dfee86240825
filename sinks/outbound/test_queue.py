"""The deliveries topic's records rebuilt into a partition's queue (sinks.outbound.queue)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sinks.outbound.queue import (
    PartitionQueue,
    QueuedDelivery,
    QueueRecordError,
    RecordKind,
    decode_delivery,
    encode_delivery,
    encode_retry,
    parse_key,
    record_key,
)


def planned(i: str = "msg_1", at: float = 100.0) -> QueuedDelivery:
    return QueuedDelivery(i, "p", "g", "conversion.tracked", "POST", "https://h/x", b'{"a":\x001}', at, at)


def test_records_round_trip_with_any_body_bytes():
    d = planned()
    assert decode_delivery(encode_delivery(d)) == d
    assert parse_key(record_key(RecordKind.STATE, "msg_1")) == (RecordKind.STATE, "msg_1")


@pytest.mark.parametrize("key", [b"x/1", b"s/", b"nothing"])
def test_unknown_keys_are_refused(key):
    with pytest.raises(QueueRecordError):
        parse_key(key)


def test_undecodable_values_are_refused():
    with pytest.raises(QueueRecordError):
        decode_delivery(b"{not json")
    with pytest.raises(QueueRecordError):
        decode_delivery(b'{"v": 99}')


def test_a_replayed_plan_never_resets_a_delivery():
    q = PartitionQueue()
    d = planned()
    q.apply(record_key(RecordKind.PLANNED, d.id), encode_delivery(d))
    done = q.update(replace(d, status="delivered", next_at=None, attempts=1))
    assert done.rev == 1
    q.apply(record_key(RecordKind.PLANNED, d.id), encode_delivery(d))  # the planner replayed its batch
    assert q.deliveries[d.id].status == "delivered" and q.due(1e9, 10) == []


def test_rebuild_in_log_order_gives_the_latest_state_and_due_order():
    log: list[tuple[bytes, bytes | None]] = []
    a, b = planned("a", 50.0), planned("b", 10.0)
    log += [(record_key(RecordKind.PLANNED, x.id), encode_delivery(x)) for x in (a, b)]
    writer = PartitionQueue()
    for k, v in log:
        writer.apply(k, v)
    assert [d.id for d in writer.due(60.0, 10)] == ["b", "a"]
    assert [d.id for d in writer.due(20.0, 10)] == ["b"]
    failed = writer.update(replace(b, status="failed", next_at=70.0, attempts=1))
    log.append((record_key(RecordKind.STATE, "b"), encode_delivery(failed)))
    rebuilt = PartitionQueue()
    for k, v in log:
        rebuilt.apply(k, v)
    assert rebuilt.deliveries == writer.deliveries
    assert [d.id for d in rebuilt.due(60.0, 10)] == ["a"]
    assert rebuilt.stats(75.0) == (2, 25.0)
    # an older state record read after a newer one changes nothing
    rebuilt.apply(record_key(RecordKind.STATE, "b"), encode_delivery(replace(b, rev=0)))
    assert rebuilt.deliveries["b"].status == "failed"


def test_retry_brings_a_dead_delivery_back_and_leaves_delivered_ones():
    q = PartitionQueue()
    d = planned()
    q.apply(record_key(RecordKind.PLANNED, d.id), encode_delivery(d))
    q.update(replace(d, status="dead", next_at=None, step=8, dead_reason="x"))
    assert q.due(1e9, 10) == []
    back = q.apply(record_key(RecordKind.RETRY, d.id), encode_retry(500.0))
    assert back is not None and back.status == "pending" and back.step == 0 and back.dead_reason is None
    assert [x.id for x in q.due(500.0, 10)] == [d.id]
    q.update(replace(back, status="delivered", next_at=None))
    again = q.apply(record_key(RecordKind.RETRY, d.id), encode_retry(600.0))
    assert again is not None and again.status == "delivered"


def test_a_state_tombstone_forgets_the_delivery():
    q = PartitionQueue()
    d = planned()
    q.apply(record_key(RecordKind.PLANNED, d.id), encode_delivery(d))
    q.apply(record_key(RecordKind.STATE, d.id), None)
    assert len(q) == 0 and q.due(1e9, 10) == []
