"""The embedded mode's durable log: what Kafka is in distributed mode, as segment files on local disk.

Record layout: ``[u32 payload length][u32 crc32][u16 partition][payload]`` (big-endian). Offsets are byte
positions in the logical log (segment base + position). ``append_many`` writes a group of records and
fsyncs once before returning (group commit), so an acknowledged record survives a crash. A torn tail
(crash mid-write) is detected by length/CRC at open and cut off; it was never acknowledged.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_HDR = struct.Struct(">IIH")
SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogRecord:
    offset: int
    next_offset: int
    partition: int
    payload: bytes


class LogCorrupt(Exception):
    retriable = False


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """``os.write`` until all of ``data`` is written (a full disk shows as a short write, then ENOSPC)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class LocalLog:
    """Segment files written through a raw file descriptor (no user-space buffer that could flush a failed
    write later). ``end_offset`` moves only after a group is written *and* fsynced; a failed append cuts
    the segment back to it, so the next append starts on a clean tail and nothing that was not
    acknowledged stays behind. Until that cut succeeds the log refuses appends (readers never see past
    ``end_offset``)."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._bases = sorted(int(p.stem) for p in self.dir.glob("*.log"))
        if not self._bases:
            self._bases = [0]
            (self.dir / self._name(0)).touch()
        self._drop_orphan_segments()
        self._recover_tail()
        active = self.dir / self._name(self._bases[-1])
        self._fd = self._open(active)
        self.end_offset = self._bases[-1] + active.stat().st_size
        self._torn = False  # a failed append left bytes past end_offset that could not be cut yet
        self._fsync_dir()

    @staticmethod
    def _name(base: int) -> str:
        return f"{base:020d}.log"

    @staticmethod
    def _open(path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _drop_orphan_segments(self) -> None:
        """An empty last segment whose base is not where the one before it ends was left by a roll that
        failed (its directory fsync): the records went on in the segment before it."""
        while len(self._bases) > 1:
            last = self.dir / self._name(self._bases[-1])
            before = self._bases[-2] + (self.dir / self._name(self._bases[-2])).stat().st_size
            if last.stat().st_size or before == self._bases[-1]:
                return
            last.unlink()
            self._bases.pop()

    def _recover_tail(self) -> None:
        path = self.dir / self._name(self._bases[-1])
        data = path.read_bytes()
        pos = 0
        while pos + _HDR.size <= len(data):
            length, crc, _ = _HDR.unpack_from(data, pos)
            end = pos + _HDR.size + length
            if end > len(data) or zlib.crc32(data[pos + _HDR.size : end]) != crc:
                break
            pos = end
        if pos != len(data):
            with open(path, "r+b") as fh:
                fh.truncate(pos)
                os.fsync(fh.fileno())

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def append_many(self, records: list[tuple[int, bytes]]) -> list[int]:
        """Append and fsync; return each record's offset. On any error (a full disk: ENOSPC from the
        write or the fsync) nothing of this call stays in the log and the error is raised: the caller
        answers its clients 503, and the next call appends on a clean tail."""
        with self._lock:
            if self._torn:
                self._cut_back()  # raises while the cut still fails: nothing is appended after garbage
            offsets = []
            buf = bytearray()
            for partition, payload in records:
                offsets.append(self.end_offset + len(buf))
                buf += _HDR.pack(len(payload), zlib.crc32(payload), partition)
                buf += payload
            try:
                _write_all(self._fd, buf)
                os.fsync(self._fd)
            except OSError:
                # After a failed fsync the page cache may still hold the bytes: cut them off in any case.
                self._torn = True
                try:
                    self._cut_back()
                except OSError as cut_error:
                    log.error("local log %s: cannot cut a failed append back yet: %s", self.dir, cut_error)
                raise
            self.end_offset += len(buf)
            if self.end_offset - self._bases[-1] >= self.segment_bytes:
                try:
                    self._roll()
                except OSError as exc:  # the records are durable; rolling is tried again next append
                    log.warning("local log %s: cannot start a new segment yet: %s", self.dir, exc)
            return offsets

    def _cut_back(self) -> None:
        """Truncate the active segment to ``end_offset`` (what was acknowledged) and make that durable."""
        os.ftruncate(self._fd, self.end_offset - self._bases[-1])
        os.fsync(self._fd)
        self._torn = False

    def _roll(self) -> None:
        path = self.dir / self._name(self.end_offset)
        fd = self._open(path)
        try:
            self._fsync_dir()
        except OSError:
            # An empty segment that is not in ``_bases`` would be taken for the active one at the next
            # start: remove it (if that fails too, the next start drops it: ``_drop_orphan_segments``).
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(self._fd)
        self._fd = fd
        self._bases.append(self.end_offset)

    def read(
        self, offset: int, *, max_records: int = 1000, max_bytes: int = 16 * 1024 * 1024
    ) -> list[LogRecord]:
        with self._lock:
            end = self.end_offset
            bases = list(self._bases)
        if offset >= end:
            return []
        base = max((b for b in bases if b <= offset), default=None)
        if base is None:
            raise LogCorrupt(f"offset {offset} is below the oldest retained segment {bases[0]}")
        later = [b for b in bases if b > base]
        seg_end = later[0] if later else end  # one call reads within one segment; the next call moves on
        out: list[LogRecord] = []
        size = 0
        with open(self.dir / self._name(base), "rb") as fh:
            fh.seek(offset - base)
            pos = offset
            while len(out) < max_records and size < max_bytes and pos < seg_end:
                hdr = fh.read(_HDR.size)
                if len(hdr) < _HDR.size:
                    raise LogCorrupt(f"segment {base} ends inside the header at offset {pos}")
                length, crc, partition = _HDR.unpack(hdr)
                payload = fh.read(length)
                if len(payload) != length or zlib.crc32(payload) != crc:
                    raise LogCorrupt(f"record at offset {pos} fails its checksum")
                nxt_off = pos + _HDR.size + length
                out.append(LogRecord(pos, nxt_off, partition, payload))
                size += length
                pos = nxt_off
        return out

    def delete_before(self, offset: int) -> int:
        """Remove whole segments that end at or before ``offset`` (already consumed). Returns how many."""
        removed = 0
        with self._lock:
            while len(self._bases) > 1 and self._bases[1] <= offset:
                (self.dir / self._name(self._bases[0])).unlink()
                self._bases.pop(0)
                removed += 1
        return removed

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


class OffsetStore:
    """The committed consumer position, written atomically (write temp, fsync, rename)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0

    def commit(self, offset: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(str(offset))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
