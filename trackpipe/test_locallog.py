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


class _DiskFull:
    """ENOSPC from ``os.write`` (after a short write, as a filling disk does) or ``os.fsync``, and EIO from
    ``os.ftruncate``, on the log's own descriptor, each while its flag is set; other descriptors are
    untouched."""

    def __init__(self, monkeypatch, log: LocalLog, *, on: str, cut_fails: bool = False):
        self.write_fails, self.fsync_fails, self.cut_fails = on == "write", on == "fsync", cut_fails
        real_write, real_fsync, real_truncate = os.write, os.fsync, os.ftruncate

        def write(fd, data):
            if self.write_fails and fd == log._fd:
                real_write(fd, bytes(data)[: max(1, len(data) // 2)])  # part of it lands on disk
                raise OSError(28, "No space left on device")
            return real_write(fd, data)

        def fsync(fd):
            if self.fsync_fails and fd == log._fd:
                raise OSError(28, "No space left on device")
            return real_fsync(fd)

        def ftruncate(fd, length):
            if self.cut_fails and fd == log._fd:
                raise OSError(5, "Input/output error")
            return real_truncate(fd, length)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "ftruncate", ftruncate)

    def off(self) -> None:
        self.write_fails = self.fsync_fails = self.cut_fails = False


@pytest.mark.parametrize("on", ["write", "fsync"])
def test_a_failed_append_leaves_nothing_behind_and_later_appends_survive_a_restart(tmp_path, monkeypatch, on):
    log = LocalLog(tmp_path)
    log.append_many([(0, b"acked-1")])
    end = log.end_offset
    fault = _DiskFull(monkeypatch, log, on=on)
    with pytest.raises(OSError):
        log.append_many([(1, b"refused-" + b"x" * 1000), (2, b"refused-2")])
    fault.off()
    # the segment is cut back to what was acknowledged: no partial bytes for the next append to follow
    assert log.end_offset == end and next(tmp_path.glob("*.log")).stat().st_size == end
    log.append_many([(3, b"acked-2")])
    assert [r.payload for r in log.read(0)] == [b"acked-1", b"acked-2"]
    log.close()
    again = LocalLog(tmp_path)  # the restart keeps every acknowledged record and no refused one
    assert [r.payload for r in again.read(0)] == [b"acked-1", b"acked-2"]


def test_appends_are_refused_until_a_failed_append_is_cut_back(tmp_path, monkeypatch):
    log = LocalLog(tmp_path)
    log.append_many([(0, b"acked-1")])
    fault = _DiskFull(monkeypatch, log, on="write", cut_fails=True)
    with pytest.raises(OSError):
        log.append_many([(0, b"refused" * 100)])
    fault.write_fails = False  # room again, but the partial bytes could not be cut yet
    with pytest.raises(OSError):  # appending after them would lose the record at the next start
        log.append_many([(0, b"would-follow-garbage")])
    assert log.read(0)[-1].payload == b"acked-1"  # readers never see past the acknowledged end
    fault.off()
    log.append_many([(0, b"acked-2")])
    log.close()
    assert [r.payload for r in LocalLog(tmp_path).read(0)] == [b"acked-1", b"acked-2"]


def test_a_failed_segment_roll_keeps_the_records_and_leaves_no_orphan_segment(tmp_path, monkeypatch):
    log = LocalLog(tmp_path, segment_bytes=100)
    real_fsync = os.fsync

    def no_dir_fsync(fd):
        if fd != log._fd:
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", no_dir_fsync)
    log.append_many([(0, b"a" * 120)])  # durable even though the next segment could not be started
    log.append_many([(0, b"b" * 10)])
    assert len(list(tmp_path.glob("*.log"))) == 1
    monkeypatch.setattr(os, "fsync", real_fsync)
    log.append_many([(0, b"c" * 10)])
    log.close()
    again = LocalLog(tmp_path, segment_bytes=100)
    assert [r.payload[:1] for r in again.read(0)] == [b"a", b"b", b"c"]


def test_an_orphan_empty_segment_left_by_a_crash_is_dropped_at_open(tmp_path):
    log = LocalLog(tmp_path, segment_bytes=1000)
    log.append_many([(0, b"a" * 50)])
    log.append_many([(0, b"b" * 50)])
    log.close()
    (tmp_path / LocalLog._name(40)).touch()  # a roll whose directory fsync failed, then a crash
    again = LocalLog(tmp_path, segment_bytes=1000)
    assert [r.payload[:1] for r in again.read(0)] == [b"a", b"b"]
    again.append_many([(0, b"c")])
    assert [r.payload[:1] for r in again.read(0)] == [b"a", b"b", b"c"]
