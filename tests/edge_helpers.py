"""An edge app over the real local log (no Kafka, no ClickHouse) for edge-level tests."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ingest.app import build_edge_app
from ingest.config import EdgeConfig
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
