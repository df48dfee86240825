"""A small Server-Sent Events client for tests: reads ``n`` events from a URL (own thread, timeout)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class SseEvent:
    id: str
    event: str
    data: dict[str, Any]


class SseError(AssertionError):
    def __init__(self, status: int, body: bytes):
        super().__init__(f"SSE request answered {status}: {body[:300]!r}")
        self.status = status
        self.body = body


def read_events(
    url: str,
    headers: dict[str, str],
    n: int,
    timeout: float = 60,
    sink: list[SseEvent] | None = None,
    stop: threading.Event | None = None,
) -> list[SseEvent]:
    """Connect, read until ``n`` events arrived (comments and ``retry:`` lines skipped) or ``timeout``
    seconds passed (AssertionError), disconnect. ``sink``: also append each event there as it arrives;
    ``stop``: return early once it is set (checked at each line, so at least every keep-alive)."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}", headers={"Accept": "text/event-stream", **headers})
        resp = conn.getresponse()
        if resp.status != 200:
            raise SseError(resp.status, resp.read())
        assert resp.getheader("Content-Type", "").startswith("text/event-stream")
        out: list[SseEvent] = []
        fields: dict[str, str] = {}
        while len(out) < n:
            if stop is not None and stop.is_set():
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(out)} of {n} events within {timeout}s: {out[-3:]}")
            raw = resp.readline()
            if not raw:
                raise AssertionError(f"stream ended after {len(out)} of {n} events")
            line = raw.decode().rstrip("\r\n")
            if not line:
                if "data" in fields:
                    event = SseEvent(
                        fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"])
                    )
                    out.append(event)
                    if sink is not None:
                        sink.append(event)
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        return out
    finally:
        conn.close()
