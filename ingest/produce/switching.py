"""The edge's sender, switchable to another publisher while requests keep coming (a rescale moves the
edges onto a new generation of the events topic, docs/rescaling.md).

:meth:`SwitchingSender.switch` starts a sender (its own accumulator, partitioned for the new
publisher's partition count) and routes every request that arrives from then on to it; then it stops
the old sender, which publishes what it holds and waits for its acknowledgements, and stops the old
publisher. When ``switch`` returns, every event this edge accepted before the switch is durable in the
old topic (or its request was answered with an error), and every later one goes to the new topic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ingest.produce.publisher import Publisher
from ingest.produce.sender import EdgeSender
from schemas.events import Event


class SwitchingSender:
    def __init__(self, make_sender: Callable[[Publisher], EdgeSender], publisher: Publisher):
        self._make = make_sender
        self.publisher = publisher
        self.current = make_sender(publisher)
        self._lock = asyncio.Lock()

    @property
    def partitions(self) -> int:
        return self.publisher.partitions

    async def start(self) -> None:
        await self.current.start()

    def submit(self, events: Sequence[Event]) -> Coroutine[Any, Any, None]:
        # the current sender's coroutine itself (no frame of ours per request)
        return self.current.submit(events)

    def submit_serialized(self, key: str, blobs: Sequence[bytes]) -> Coroutine[Any, Any, None]:
        return self.current.submit_serialized(key, blobs)

    def publisher_health(self) -> str | None:
        return self.current.publisher_health()

    async def switch(self, publisher: Publisher) -> None:
        """Route new requests to ``publisher`` (started here); drain and stop the old sender and publisher."""
        async with self._lock:
            await publisher.start()
            sender = self._make(publisher)
            await sender.start()
            old_sender, old_publisher = self.current, self.publisher
            self.current, self.publisher = sender, publisher
            await old_sender.stop()
            await old_publisher.stop()

    async def stop(self) -> None:
        async with self._lock:
            await self.current.stop()
            await self.publisher.stop()
