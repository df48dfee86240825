"""The one sink: ``write_batch`` a ProcessedBatch into ClickHouse, idempotently.

Each batch carries a token derived from what it contains (source, partition, offset range); every
table's insert uses ``<token>/<table>`` as ``insert_deduplication_token``, and every table replaces rows
by key (highest version), so a retried or replayed batch never double-counts. A failing write raises
``BackendError`` with ``retriable`` set: the caller stops committing input offsets and retries
(backpressure) — nothing is dropped.

Tables: ``events_raw`` (with each event's ``session_id``), ``conversions`` (statuses, attribution and
credits), ``sessions``, ``variation_exposures`` — see docs/processing.md.
"""

from __future__ import annotations

from schemas.rows import ProcessedBatch
from sinks.arrow_rows import conversions_table, events_table, exposures_table, sessions_table
from sinks.backend import ClickHouseBackend


class ClickHouseSink:
    def __init__(self, backend: ClickHouseBackend):
        self.backend = backend
        self.rows_written = 0

    def write_batch(self, batch: ProcessedBatch, token: str) -> None:
        if batch.events:
            self.backend.insert_arrow(
                "events_raw", events_table(batch.events, batch.session_ids), dedup_token=f"{token}/events"
            )
        if batch.conversions:
            self.backend.insert_arrow(
                "conversions", conversions_table(batch.conversions), dedup_token=f"{token}/conversions"
            )
        if batch.sessions:
            self.backend.insert_arrow(
                "sessions", sessions_table(batch.sessions), dedup_token=f"{token}/sessions"
            )
        if batch.exposures:
            self.backend.insert_arrow(
                "variation_exposures", exposures_table(batch.exposures), dedup_token=f"{token}/exposures"
            )
        self.rows_written += (
            len(batch.events) + len(batch.conversions) + len(batch.sessions) + len(batch.exposures)
        )
