import time
import uuid

from schemas.ids import event_id_millis, new_event_id


def test_ids_are_uuid7_increasing_and_carry_their_time():
    before = time.time_ns() // 1_000_000
    ids = [new_event_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for i in ids[::997]:
        u = uuid.UUID(i)
        assert str(u) == i and u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= event_id_millis(i) <= after + 5  # a borrowed ms at most a few ahead
