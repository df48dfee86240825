"""Publisher of the embedded mode: envelope records go to the local durable log."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ingest.produce.publisher import PublishError
from trackpipe.locallog import LocalLog

#: Bytes a health probe writes (and removes) in the log's directory after a failed append.
PROBE_BYTES = 64 * 1024
#: At most one probe per this many seconds, however often /healthz is asked.
PROBE_EVERY_S = 1.0


class Wakeable(Protocol):
    def set(self) -> None: ...


class LocalLogPublisher:
    def __init__(self, log: LocalLog, partitions: int, on_append: Wakeable | None = None):
        """``on_append.set()`` after each successful append (the embedded runner's thread-safe wake-up)."""
        self.log = log
        self.partitions = partitions
        self._on_append = on_append
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="locallog")
        self._failure: str | None = None  # why the last append failed; None once one succeeds
        self._probed_at = 0.0

    async def start(self) -> None:
        return None

    async def publish_many(self, records: list[tuple[int, bytes]]) -> list[BaseException | None]:
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self.log.append_many, records)
        except OSError as exc:
            self._failure = f"local log not writable: {exc}"
            err = PublishError(f"local log write failed: {exc}", retriable=True)
            return [err] * len(records)
        self._failure = None
        if self._on_append is not None:
            self._on_append.set()
        return [None] * len(records)

    def health(self) -> str | None:
        """After a failed append, the log is unhealthy until a probe write (64 KiB, fsynced, removed) in its
        directory succeeds or a real append does: so /healthz turns ready again by itself when space
        returns, also while a load balancer sends no traffic."""
        if self._failure is None:
            return None
        now = time.monotonic()
        if now - self._probed_at >= PROBE_EVERY_S:
            self._probed_at = now
            if _probe_write(self.log.dir):
                self._failure = None
        return self._failure

    async def stop(self) -> None:
        self._io.shutdown(wait=True)


def _probe_write(directory: os.PathLike[str]) -> bool:
    path = os.path.join(directory, ".write-probe")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(bytes(PROBE_BYTES))
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    except OSError:
        return False
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
