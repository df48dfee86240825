"""Where the edge reads the public stream from (implemented by the wiring: the embedded state database,
or the Kafka topic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StreamItem:
    cursor: str  # the SSE id: resuming after it gives the next message, nothing twice, nothing skipped
    type: str
    body: bytes  # the whole CloudEvent (JSON)


class CursorError(ValueError):
    """A ``Last-Event-ID`` that is not a cursor of this stream (400), or one older than the retained
    messages (``expired``: 410, a gap would follow)."""

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


class StreamUnavailable(RuntimeError):
    """The stream cannot be read now (503)."""


class StreamSource(Protocol):
    async def latest(self, project: str) -> str | None:
        """The cursor of ``project``'s newest message now (None: none yet), to follow from."""
        ...

    async def read(self, project: str, after: str | None, limit: int, wait_s: float) -> list[StreamItem]:
        """``project``'s messages after ``after`` (None: from the oldest retained), in order, at most
        ``limit``; waits up to ``wait_s`` for one when there is none yet. Raises CursorError."""
        ...
