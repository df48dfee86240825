"""Publisher of the embedded mode: envelope records go to the local durable log."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from ingest.publisher import PublishError
from trackpipe.locallog import LocalLog


class LocalLogPublisher:
    def __init__(self, log: LocalLog, partitions: int, on_append: asyncio.Event | None = None):
        self.log = log
        self.partitions = partitions
        self._on_append = on_append
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="locallog")

    async def start(self) -> None:
        return None

    async def publish_many(self, records: list[tuple[int, bytes]]) -> list[BaseException | None]:
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, self.log.append_many, records)
        except OSError as exc:
            err = PublishError(f"local log write failed: {exc}", retriable=True)
            return [err] * len(records)
        if self._on_append is not None:
            self._on_append.set()
        return [None] * len(records)

    async def stop(self) -> None:
        self._io.shutdown(wait=True)
