"""The one sink: ``write_batch`` a ProcessedBatch into ClickHouse, idempotently.

Each batch carries a token derived from what it contains (source, partition, offset range); every
table's insert uses ``<token>/<table>`` as ``insert_deduplication_token``, and every table replaces rows
by key (highest version), so a retried or replayed batch never double-counts. A failing write raises
``BackendError`` with ``retriable`` set: the caller stops committing input offsets and retries
(backpressure) — nothing is dropped.

Tables: ``events_raw`` (with each event's ``session_id``), ``conversions`` (statuses, attribution and
credits), ``sessions``, ``variation_exposures`` — see docs/processing.md.

The tables are built (rows to Arrow, Python work) in the calling thread and inserted, in that order,
by one helper thread, so the next table is built while the previous one is being inserted (the insert
mostly waits on the engine). Inserts stay sequential and ordered; after a failed insert no further
table is inserted, and ``write_batch`` never returns while one of its inserts is still running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import pyarrow as pa

from schemas.rows import ProcessedBatch
from sinks import report_counters
from sinks.arrow_rows import conversions_table, events_table, exposures_table, sessions_table
from sinks.backend import ClickHouseBackend
from sinks.counter_rows import COUNTER_TABLES, counters_table


class ClickHouseSink:
    def __init__(self, backend: ClickHouseBackend):
        self.backend = backend
        self.rows_written = 0

    def write_batch(self, batch: ProcessedBatch, token: str) -> None:
        parts = list(_parts(batch, token))
        if len(parts) == 1:
            table, build, dedup_token = parts[0]
            self.backend.insert_arrow(table, build(), dedup_token=dedup_token)
        elif parts:
            self._pipelined(parts)
        for mark in batch.counters_ready:  # after its counters: never marked before they are stored
            report_counters.mark_ready(
                self.backend, mark.project_id, mark.ready, mark.max_days, mark.retention_days
            )
        self.rows_written += (
            len(batch.events) + len(batch.conversions) + len(batch.sessions) + len(batch.exposures)
        )

    def _pipelined(self, parts: list[tuple[str, Callable[[], pa.Table], str]]) -> None:
        with ThreadPoolExecutor(1, thread_name_prefix="trackpipe-sink-insert") as inserter:
            pending: Future[None] | None = None
            try:
                for table, build, dedup_token in parts:
                    data = build()
                    if pending is not None:
                        pending.result()  # the previous insert's error stops the batch here
                    pending = inserter.submit(self.backend.insert_arrow, table, data, dedup_token=dedup_token)
                assert pending is not None
                pending.result()
            finally:
                if pending is not None:
                    pending.exception()  # on error: wait for a running insert before leaving


def _parts(batch: ProcessedBatch, token: str) -> Iterator[tuple[str, Callable[[], pa.Table], str]]:
    """(table, its Arrow builder, dedup token) for each non-empty table of ``batch``, in insert order."""
    if batch.events:
        yield "events_raw", lambda: events_table(batch.events, batch.session_ids), f"{token}/events"
    if batch.conversions:
        yield "conversions", lambda: conversions_table(batch.conversions), f"{token}/conversions"
    if batch.sessions:
        yield "sessions", lambda: sessions_table(batch.sessions), f"{token}/sessions"
    if batch.exposures:
        yield "variation_exposures", lambda: exposures_table(batch.exposures), f"{token}/exposures"
    for kind, (table, _) in COUNTER_TABLES.items():  # the writers' counters (decision 100)
        if rows := getattr(batch, kind):
            yield table, partial(counters_table, kind, rows), f"{token}/{kind}"
