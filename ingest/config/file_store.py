"""Embedded config store: goals, links and alert rules in one append-only file under the data dir.

Each line is ``{"k": key, "v": value-or-null}`` (orjson). A write appends its lines and fsyncs before it
returns, then applies them. At start the file is read in order; a torn last line (a crash mid-write,
never acknowledged) is cut off; an unreadable line anywhere else stops the start (a hand-edited or
damaged file is reported, not guessed at); a record of a kind a later version wrote is kept (also by a
compaction) and skipped. When most lines are superseded the file is compacted
(write a temporary file, fsync, rename).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from schemas.config import (
    ConfigRecord,
    ConfigRecordError,
    ConfigState,
    ConfigStoreError,
    UnknownKind,
    check_readable,
)

log = logging.getLogger(__name__)


def _line(rec: ConfigRecord) -> bytes:
    value = rec.value if rec.value is not None else b"null"
    return b'{"k":' + orjson.dumps(rec.key) + b',"v":' + value + b"}\n"


class FileConfigStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._state = ConfigState()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="config-file")
        self._lock = asyncio.Lock()
        self._lines = 0

    @property
    def state(self) -> ConfigState:
        return self._state

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._io, self._load)

    def _load(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self.path.touch()
            return
        data = self.path.read_bytes()
        good_end = 0
        latest: dict[str, bytes | None] = {}
        for lineno, line in enumerate(data.split(b"\n"), start=1):
            end = good_end + len(line) + 1
            if end > len(data):  # last piece without a newline: torn tail, never acknowledged
                break
            try:
                obj = orjson.loads(line)
                key = obj["k"]
                value = None if obj["v"] is None else orjson.dumps(obj["v"])
                self._apply_read(key, value, lineno)
            except (orjson.JSONDecodeError, KeyError, TypeError, ConfigRecordError) as exc:
                raise ConfigStoreError(
                    f"{self.path} line {lineno} is not a configuration record: {exc}", retriable=False
                ) from None
            latest[key] = value
            good_end = end
            self._lines += 1
        if good_end != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                os.fsync(fh.fileno())
        if self._lines > 2 * len(latest) + 100:
            self._compact(latest)

    def _apply_read(self, key: str, value: bytes | None, lineno: int) -> None:
        try:
            self._state.apply(key, value)
        except UnknownKind as exc:
            self._state.unknown_records += 1
            log.warning("%s line %d skipped: %s", self.path, lineno, exc)

    def _compact(self, latest: dict[str, bytes | None]) -> None:
        tmp = self.path.with_suffix(".compact")
        live = [ConfigRecord(k, v) for k, v in latest.items() if v is not None]
        with open(tmp, "wb") as fh:
            fh.write(b"".join(_line(r) for r in live))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._lines = len(live)

    def _append(self, blob: bytes) -> None:
        with open(self.path, "ab") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())

    async def write(self, records: Sequence[ConfigRecord]) -> None:
        check_readable(records)
        blob = b"".join(_line(r) for r in records)
        async with self._lock:
            try:
                await asyncio.get_running_loop().run_in_executor(self._io, self._append, blob)
            except OSError as exc:
                raise ConfigStoreError(f"cannot write {self.path}: {exc}") from exc
            for rec in records:
                self._state.apply(rec.key, rec.value)
            self._lines += len(records)

    async def stop(self) -> None:
        self._io.shutdown(wait=True)
