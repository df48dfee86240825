import os

import pytest

from trackpipe.locallog import LocalLog, LogCorrupt, OffsetStore


def test_append_read_and_reopen(tmp_path):
    log = LocalLog(tmp_path)
    offs = log.append_many([(0, b"one"), (3, b"two")])
    offs += log.append_many([(1, b"three")])
    recs = log.read(0)
    assert [(r.offset, r.partition, r.payload) for r in recs] == list(
        zip(offs, [0, 3, 1], [b"one", b"two", b"three"])
    )
    assert log.read(recs[1].next_offset)[0].payload == b"three"
    log.close()
    again = LocalLog(tmp_path)
    assert [r.payload for r in again.read(0)] == [b"one", b"two", b"three"]
    assert again.end_offset == recs[-1].next_offset


def test_torn_tail_is_cut_at_open(tmp_path):
    log = LocalLog(tmp_path)
    log.append_many([(0, b"kept")])
    log.close()
    seg = next(tmp_path.glob("*.log"))
    with open(seg, "ab") as fh:
        fh.write(b"\x00\x00\x00\x10\x00")  # half a header: a crash mid-append
    again = LocalLog(tmp_path)
    assert [r.payload for r in again.read(0)] == [b"kept"]
    again.append_many([(0, b"next")])
    assert [r.payload for r in again.read(0)] == [b"kept", b"next"]


def test_segments_roll_and_consumed_ones_are_deleted(tmp_path):
    log = LocalLog(tmp_path, segment_bytes=100)
    for i in range(10):
        log.append_many([(0, b"x" * 60 + bytes([i]))])
    assert len(list(tmp_path.glob("*.log"))) > 5
    pos, seen = 0, []
    while recs := log.read(pos):
        seen += [r.payload[-1] for r in recs]
        pos = recs[-1].next_offset
    assert seen == list(range(10))
    removed = log.delete_before(pos)
    assert removed >= 4 and len(list(tmp_path.glob("*.log"))) == 1 and log.read(pos) == []
    with pytest.raises(LogCorrupt):
        log.read(0)


def test_offset_store_atomic(tmp_path):
    store = OffsetStore(tmp_path / "o")
    assert store.load() == 0
    store.commit(1234)
    assert store.load() == 1234 and not os.path.exists(tmp_path / "o.tmp")
