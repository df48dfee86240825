"""The Faust adapter: agents only feed envelope records to the pure pipeline core and hand the result on.

Exactness does not come from Faust's exactly-once mode (unreliable: faust-streaming #323, #502, #517) but
from idempotent sinks: each batch is written with a token naming its offset ranges, and the tables keep
one row per key. ``take_events`` acks a batch only after the loop body returns, so the body retries the
write until it succeeds; if the worker is stopped while a write is failing it exits without acking
(fail-stop), and the batch is delivered again to whoever owns the partitions next.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from processors.pipeline import ConversionPipeline
from schemas.rows import ProcessedBatch

log = logging.getLogger(__name__)

BatchWriter = Callable[[ProcessedBatch, str], Awaitable[None]]


def batch_token(topic: str, spans: Sequence[tuple[int, int]]) -> str:
    """Deterministic id of a batch: per partition, the first and last offset it holds."""
    ranges: dict[int, tuple[int, int]] = {}
    for partition, offset in spans:
        lo, hi = ranges.get(partition, (offset, offset))
        ranges[partition] = (min(lo, offset), max(hi, offset))
    return f"{topic}|" + ",".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(ranges.items()))


def build_faust_app(
    *,
    app_id: str,
    broker: str,
    topic: str,
    partitions: int,
    writer: BatchWriter,
    batch_max: int = 2000,
    batch_within_s: float = 0.5,
    store: str = "memory://",
    broker_options: dict[str, Any] | None = None,
    pipeline: ConversionPipeline | None = None,
) -> faust.App:
    app = faust.App(
        app_id,
        broker=broker,
        store=store,
        web_enabled=False,
        topic_partitions=partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=batch_max,
        broker_commit_interval=1.0,
        **(broker_options or {}),
    )
    events_topic = app.topic(
        topic,
        value_type=bytes,
        key_type=bytes,
        value_serializer="raw",
        key_serializer="raw",
        partitions=partitions,
    )
    deadletter_topic = app.topic(
        f"{topic}.deadletter",
        value_type=bytes,
        value_serializer="raw",
        key_type=bytes,
        key_serializer="raw",
        partitions=partitions,
    )
    core = pipeline or ConversionPipeline()
    app.conf.trackpipe_stats = {"batches": 0, "events": 0, "conversions": 0}

    @app.agent(events_topic, name=f"{app_id}.process")
    async def process(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(batch_max, within=batch_within_s):  # type: ignore[attr-defined]
            records = [e.value for e in events]
            result = core.process_records(records)
            token = batch_token(topic, [(e.message.partition, e.message.offset) for e in events])
            await _write_until_done(writer, result.batch, token)
            for dead in result.dead_letters:
                await deadletter_topic.send(value=dead.raw, headers={"reason": dead.reason.encode()})
            stats = app.conf.trackpipe_stats
            stats["batches"] += 1
            stats["events"] += len(result.batch.events)
            stats["conversions"] += len(result.batch.conversions)

    return app


async def _write_until_done(writer: BatchWriter, batch: ProcessedBatch, token: str) -> None:
    backoff = 0.1
    while True:
        try:
            await writer(batch, token)
            return
        except asyncio.CancelledError:
            log.critical("stopped while batch %s was not written: exiting without ack", token)
            os._exit(75)
        except Exception as exc:
            retriable = getattr(exc, "retriable", True)
            log.error(
                "sink write of %s failed (retriable=%s), retrying in %.1fs: %s",
                token,
                retriable,
                backoff,
                exc,
            )
            try:
                await asyncio.sleep(backoff)
            except asyncio.CancelledError:
                log.critical("stopped while batch %s was not written: exiting without ack", token)
                os._exit(75)
            backoff = min(backoff * 2, 30.0)
