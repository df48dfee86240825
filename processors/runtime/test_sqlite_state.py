from datetime import UTC, datetime

from processors.outcome import DropReason
from processors.pipeline import ConversionPipeline, SourceRecord
from processors.runtime.sqlite_state import SqliteState
from schemas.envelope import encode_envelope
from schemas.events import Event, EventType

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def hit(eid: str, visitor: str) -> Event:
    return Event(
        event_id=eid,
        type=EventType.HIT_GOAL,
        received_at=T0,
        occurred_at=T0,
        account_id="p",
        project_id="p",
        visitor_id=visitor,
        goal_ids=("g",),
    )


def test_state_and_offset_commit_together_and_uncommitted_batches_vanish(tmp_path):
    rec = SourceRecord("local", 0, 0, encode_envelope([hit("01a00000-0000-7000-8000-000000000001", "v")]))
    state = SqliteState(tmp_path / "s.sqlite")
    p = ConversionPipeline(state=state)
    assert p.committed_offset() is None
    assert len(p.process_records([rec]).batch.sessions) == 1
    p.commit(10)
    rec2 = SourceRecord("local", 0, 10, encode_envelope([hit("01a00000-0000-7000-8000-000000000002", "v")]))
    p.process_records([rec2])  # processed, never committed (the sink write failed or we crashed)
    state.close()

    state = SqliteState(tmp_path / "s.sqlite")
    p = ConversionPipeline(state=state)
    assert p.committed_offset() == 10
    again = p.process_records([rec])  # a redelivery of the committed record changes nothing
    assert again.batch.sessions == () and again.dropped[DropReason.REPLAY] == 1
    out = p.process_records([rec2])  # the uncommitted one is applied once
    assert [s.events for s in out.batch.sessions] == [2]
    p.discard()
    out = p.process_records([rec2])  # discard() forgets it: processing again gives the same result
    assert [s.events for s in out.batch.sessions] == [2]
    state.close()
