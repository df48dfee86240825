"""The one sink: ``write_batch`` a ProcessedBatch into ClickHouse, idempotently.

Each batch carries a token derived from what it contains (source, partition, offset range); the tables'
inserts use it as ``insert_deduplication_token``, and both tables replace rows by key, so a retried or
replayed batch never double-counts. A failing write raises ``BackendError`` with ``retriable`` set: the
caller stops committing input offsets and retries (backpressure) — nothing is dropped.
"""

from __future__ import annotations

from schemas.rows import ProcessedBatch
from sinks.arrow_rows import conversions_table, events_table
from sinks.backend import ClickHouseBackend


class ClickHouseSink:
    def __init__(self, backend: ClickHouseBackend):
        self.backend = backend
        self.rows_written = 0

    def write_batch(self, batch: ProcessedBatch, token: str) -> None:
        if batch.events:
            self.backend.insert_arrow("events_raw", events_table(batch.events), dedup_token=f"{token}/events")
        if batch.conversions:
            self.backend.insert_arrow(
                "conversions", conversions_table(batch.conversions), dedup_token=f"{token}/conversions"
            )
        self.rows_written += len(batch.events) + len(batch.conversions)
