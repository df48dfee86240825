"""An edge app over the real local log (no Kafka, no ClickHouse) for edge-level tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from ingest.app import build_edge_app
from ingest.config.edge import EdgeConfig
from schemas.envelope import decode_envelope
from schemas.events import Event
from trackpipe.local_publisher import LocalLogPublisher
from trackpipe.locallog import LocalLog


def local_edge(tmp: Path, **cfg: object) -> tuple[web.Application, LocalLog]:
    log = LocalLog(tmp / "log")
    app = build_edge_app(EdgeConfig(**cfg), lambda: LocalLogPublisher(log, partitions=4))  # type: ignore[arg-type]
    return app, log


def logged_events(log: LocalLog) -> list[Event]:
    out: list[Event] = []
    for rec in log.read(0, max_records=100_000):
        out.extend(decode_envelope(rec.payload))
    return out


@asynccontextmanager
async def served(app: web.Application, **runner: Any) -> AsyncIterator[int]:
    """``app`` served on a free 127.0.0.1 port as ``trackpipe run`` serves it (aiohttp's defaults: handlers
    are not cancelled when the client goes away, unlike the test server's); yields the port. ``runner``:
    aiohttp server options (e.g. ``lingering_time``)."""
    runner = web.AppRunner(app, **runner)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


class RawAnswer:
    """One HTTP/1.1 answer read off a raw connection: status, headers (lower-case names), body."""

    def __init__(self, head: bytes, body: bytes):
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        pairs = (line.partition(":") for line in lines[1:] if line)
        self.headers = {name.strip().lower(): value.strip() for name, _, value in pairs}
        self.body = body


async def read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    """The next answer on the connection (headers, then a Content-Length body). Wrap in a timeout."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(RawAnswer(head[:-4], b"").headers.get("content-length", 0))
    return RawAnswer(head[:-4], await reader.readexactly(length))


async def raw_request(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection to 127.0.0.1:``port`` and send ``data`` as is (any bytes, any framing)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer
