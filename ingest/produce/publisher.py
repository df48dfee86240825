"""Where sealed envelope records go: Kafka in distributed mode, the local durable log in embedded mode."""

from __future__ import annotations

from typing import Protocol


class PublishError(Exception):
    def __init__(self, message: str, *, retriable: bool):
        super().__init__(message)
        self.retriable = retriable


class Publisher(Protocol):
    partitions: int

    async def start(self) -> None: ...

    async def publish_many(self, records: list[tuple[int, bytes]]) -> list[BaseException | None]:
        """Publish records; one result per record: None once durable, else the error (PublishError)."""

    async def stop(self) -> None: ...
