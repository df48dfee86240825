"""The embedded mode's durable log: what Kafka is in distributed mode, as segment files on local disk.

Record layout: ``[u32 payload length][u32 crc32][u16 partition][payload]`` (big-endian). Offsets are byte
positions in the logical log (segment base + position). ``append_many`` writes a group of records and
fsyncs once before returning (group commit), so an acknowledged record survives a crash. A torn tail
(crash mid-write) is detected by length/CRC at open and cut off; it was never acknowledged.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

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


class LocalLog:
    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._bases = sorted(int(p.stem) for p in self.dir.glob("*.log"))
        if not self._bases:
            self._bases = [0]
            (self.dir / self._name(0)).touch()
        self._recover_tail()
        active = self.dir / self._name(self._bases[-1])
        self._fh = open(active, "ab")
        self.end_offset = self._bases[-1] + active.stat().st_size
        self._fsync_dir()

    @staticmethod
    def _name(base: int) -> str:
        return f"{base:020d}.log"

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
        """Append and fsync; return each record's offset."""
        with self._lock:
            offsets = []
            buf = bytearray()
            for partition, payload in records:
                offsets.append(self.end_offset + len(buf))
                buf += _HDR.pack(len(payload), zlib.crc32(payload), partition)
                buf += payload
            self._fh.write(buf)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self.end_offset += len(buf)
            if self.end_offset - self._bases[-1] >= self.segment_bytes:
                self._roll()
            return offsets

    def _roll(self) -> None:
        self._fh.close()
        self._bases.append(self.end_offset)
        self._fh = open(self.dir / self._name(self.end_offset), "ab")
        self._fsync_dir()

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
            self._fh.close()


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
