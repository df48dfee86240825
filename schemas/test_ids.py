import itertools
import os
import time
import uuid

from schemas.ids import event_id_millis, new_event_id, new_event_ids


def test_ids_are_uuid7_increasing_and_carry_their_time():
    before = time.time_ns() // 1_000_000
    ids = [new_event_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for i in ids[::997]:
        u = uuid.UUID(i)
        assert str(u) == i and u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= event_id_millis(i) <= after + 5  # a borrowed ms at most a few ahead


def test_batches_of_ids_continue_the_same_sequence():
    ids: list[str] = []
    for n in (1, 50, 0, 3, 5000, 1, 4097):
        ids.extend(new_event_ids(n))
        ids.append(new_event_id())
    assert len(ids) == 1 + 50 + 3 + 5000 + 1 + 4097 + 7
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for i in ids[::101]:
        u = uuid.UUID(i)
        assert str(u) == i and u.version == 7 and u.variant == uuid.RFC_4122
    assert new_event_ids(0) == [] and new_event_ids(-1) == []


def test_counter_overflow_borrows_the_next_millisecond():
    ids = new_event_ids(3 * 4096)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    millis = [event_id_millis(i) for i in ids]
    assert millis[-1] - millis[0] >= 2  # 3 x 4096 ids cannot share fewer than three milliseconds
    for a, b in itertools.pairwise(ids):  # within a millisecond the counter counts up by one
        if event_id_millis(a) == event_id_millis(b):
            assert int(b[15:18], 16) == int(a[15:18], 16) + 1


def test_a_forked_child_draws_other_random_bits_than_its_parent():
    new_event_ids(3)  # the parent's pool holds random digits a child must not reuse
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        os.write(write_end, ",".join(new_event_ids(20)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        child = f.read().split(",")
    os.waitpid(pid, 0)
    parent = new_event_ids(20)
    assert len(child) == 20
    assert not {c[19:] for c in child} & {p[19:] for p in parent}  # the random 64 bits never repeat


def test_a_single_id_after_an_exhausted_counter_takes_the_next_millisecond(monkeypatch):
    import schemas.ids as ids_module

    future = (time.time_ns() // 1_000_000) + 60_000  # ahead of the clock: the counter decides
    monkeypatch.setattr(ids_module, "_last_ms", future)
    monkeypatch.setattr(ids_module, "_seq", 0xFFF)
    first, second = new_event_id(), new_event_id()
    assert event_id_millis(first) == future + 1 and first[15:18] == "000"
    assert event_id_millis(second) == future + 1 and second[15:18] == "001"
    assert first < second
