from datetime import UTC, datetime

from ingest.produce.accumulator import RecordAccumulator, Ticket
from schemas.envelope import decode_envelope
from schemas.events import Event, EventType
from schemas.ids import new_event_id
from schemas.partitioning import partition_for


def ev(visitor: str) -> Event:
    now = datetime.now(UTC)
    return Event(
        event_id=new_event_id(),
        type=EventType.HIT_GOAL,
        received_at=now,
        occurred_at=now,
        account_id="a",
        project_id="p",
        visitor_id=visitor,
        goal_ids=("1",),
    )


def test_partition_matches_kafka_default_partitioner():
    # Values from Kafka's Java client: Utils.toPositive(Utils.murmur2(key)) % n
    for key in ["a", "visitor-1", "1588166554499-0.2020703998482254"]:
        assert 0 <= partition_for(key, 12) < 12
        assert partition_for(key, 12) == partition_for(key, 12)


def test_groups_events_of_concurrent_requests_by_partition():
    acc = RecordAccumulator(4, partition_for)
    results: list[object] = []
    t1, t2 = Ticket(results.append), Ticket(results.append)
    e1 = [ev(f"v{i}") for i in range(20)]
    e2 = [ev(f"v{i}") for i in range(10, 30)]
    acc.append(e1, t1)
    acc.append(e2, t2)
    records = acc.drain()
    assert len(records) <= 4 and len({r.partition for r in records}) == len(records)
    seen: list[str] = []
    for r in records:
        decoded = decode_envelope(r.payload)
        assert all(partition_for(e.visitor_id, 4) == r.partition for e in decoded)
        assert r.event_count == len(decoded)
        seen.extend(e.event_id for e in decoded)
    assert sorted(seen) == sorted(e.event_id for e in e1 + e2)
    for r in records[:-1]:
        r.complete(None)
    assert results == [] or len(results) < 2  # not every record acked yet
    records[-1].complete(None)
    assert results == [None, None]


def test_failure_of_one_record_fails_the_request_once():
    acc = RecordAccumulator(4, partition_for)
    results: list[object] = []
    acc.append([ev(f"v{i}") for i in range(40)], Ticket(results.append))
    records = acc.drain()
    boom = RuntimeError("nope")
    records[0].complete(boom)
    for r in records[1:]:
        r.complete(None)
    assert results == [boom]


def test_record_limits_split_records():
    acc = RecordAccumulator(1, partition_for, max_events_per_record=7)
    done: list[object] = []
    acc.append([ev("same") for _ in range(20)], Ticket(done.append))
    records = acc.drain()
    assert [r.event_count for r in records] == [7, 7, 6]
    for r in records:
        r.complete(None)
    assert done == [None]
    assert acc.buffered_events == 0 and not acc


def test_serialized_events_make_the_same_records_as_models():
    events = [ev("same") for _ in range(20)] + [ev("other") for _ in range(3)]
    for limits in ({"max_events_per_record": 7}, {"max_record_bytes": 10_000}, {}):
        by_model = RecordAccumulator(4, partition_for, **limits)
        by_blob = RecordAccumulator(4, partition_for, **limits)
        done: list[object] = []
        for chunk in (events[:5], events[5:20], events[20:]):
            by_model.append(chunk, Ticket(lambda _e: None))
            blobs = [e.__pydantic_serializer__.to_json(e) for e in chunk]
            by_blob.append_serialized(chunk[0].visitor_id, blobs, Ticket(done.append))
        assert by_blob.buffered_events == by_model.buffered_events
        model_records, blob_records = by_model.drain(), by_blob.drain()
        key = [(r.partition, r.payload, r.event_count) for r in model_records]
        assert [(r.partition, r.payload, r.event_count) for r in blob_records] == key
        assert by_blob.buffered_events == 0 and not by_blob
        for r in blob_records[:-1]:
            r.complete(None)
        assert len(done) < 3  # not every request's records are acknowledged yet
        blob_records[-1].complete(None)
        assert done == [None, None, None]  # every request completes once, after all its records
