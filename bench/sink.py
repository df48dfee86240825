"""Stage 3, the sink: ``ClickHouseSink.write_batch`` on ``ServerBackend`` next to a raw Arrow insert.

The rows are the recorded stream after the processing core (events, their conversions, sessions and
variation exposures), in batches of ``sink_batch_events`` events. For each batch, our writer inserts it
into one database and, right after, a bare clickhouse-connect client inserts the very same rows (all four
tables, events with their session ids) as ready-made Arrow tables into another database with the same
schema; the times are summed per side, so both see the same server state. The
embedded chdb path runs in a child process (one chdb path per process), see :mod:`bench.chdb_child`.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import clickhouse_connect

from bench import stream
from bench.procs import run_module
from bench.profiles import Profile
from bench.servers import Servers
from processors.pipeline import ConversionPipeline
from schemas.rows import ProcessedBatch
from sinks.arrow_rows import conversions_table, events_table, exposures_table, sessions_table
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.server_backend import ServerBackend


def processed_batches(events: int, batch_events: int, seed: int) -> list[ProcessedBatch]:
    pipeline = ConversionPipeline()
    recorded = stream.recorded_events(events, seed=seed)
    return [pipeline.process_events(chunk).batch for chunk in stream.chunks(recorded, batch_events)]


def raw_tables(batch: ProcessedBatch) -> list[tuple[str, Any]]:
    """The Arrow tables ``ClickHouseSink.write_batch`` inserts for ``batch``, for the raw baseline."""
    tables = [("events_raw", events_table(batch.events, batch.session_ids))]
    if batch.conversions:
        tables.append(("conversions", conversions_table(batch.conversions)))
    if batch.sessions:
        tables.append(("sessions", sessions_table(batch.sessions)))
    if batch.exposures:
        tables.append(("variation_exposures", exposures_table(batch.exposures)))
    return tables


def warm_up(batches: list[ProcessedBatch]) -> None:
    """Build the tables of a few rows once before timing: pyarrow's first Python-to-Arrow conversion
    imports pandas (~0.5 s here), which would otherwise be counted in the first timed batch."""
    b = batches[0]
    raw_tables(
        ProcessedBatch(
            events=b.events[:10],
            session_ids=b.session_ids[:10],
            conversions=b.conversions[:10],
            sessions=b.sessions[:10],
            exposures=b.exposures[:10],
        )
    )


def bench_sink(servers: Servers, profile: Profile, work: Path) -> dict[str, Any]:
    batches = processed_batches(profile.sink_events, profile.sink_batch_events, seed=41)
    rows = sum(len(b.events) + len(b.conversions) + len(b.sessions) + len(b.exposures) for b in batches)
    suffix = uuid.uuid4().hex[:10]
    ours_db, raw_db = f"bench_sink_{suffix}", f"bench_raw_{suffix}"
    host, port = servers.clickhouse_host, servers.clickhouse_port
    backends = [ServerBackend(host, port, ours_db), ServerBackend(host, port, raw_db)]
    for b in backends:
        migrate(b)
    sink = ClickHouseSink(backends[0])
    raw = clickhouse_connect.get_client(host=host, port=port, database=raw_db, autogenerate_session_id=False)
    ours_s = raw_s = arrow_s = 0.0
    warm_up(batches)
    try:
        for i, batch in enumerate(batches):
            token = f"bench:{suffix}:{i}"
            t0 = time.perf_counter()
            sink.write_batch(batch, token)
            t1 = time.perf_counter()
            tables = raw_tables(batch)
            t2 = time.perf_counter()
            for name, table in tables:
                raw.insert_arrow(name, table)
            t3 = time.perf_counter()
            ours_s += t1 - t0
            arrow_s += t2 - t1
            raw_s += t3 - t2
        # events have unique ids; conversions collapse by key (ReplacingMergeTree), so compare keys
        events = sum(len(b.events) for b in batches)
        keys = len({(c.project_id, c.goal_id, c.conversion_key) for b in batches for c in b.conversions})
        check = "SELECT (SELECT count() FROM events_raw), (SELECT count() FROM conversions FINAL)"
        counts = [tuple(b.query(check)[0]) for b in backends]
        if counts != [(events, keys), (events, keys)]:
            raise RuntimeError(f"expected {(events, keys)} events/conversions in both databases: {counts}")
    finally:
        raw.close()
        with ServerBackend(host, port, "default") as admin:
            for db in (ours_db, raw_db):
                admin.command(f"DROP DATABASE IF EXISTS `{db}`")
        for b in backends:
            b.close()

    chdb = json.loads(
        run_module(
            "bench.chdb_child",
            ["--events", str(profile.sink_events), "--batch", str(profile.sink_batch_events)],
            timeout=300,
        )
        .strip()
        .splitlines()[-1]
    )
    return {
        "rows": rows,
        "batches": len(batches),
        "rows_per_batch": rows / len(batches),
        "rows_per_s": rows / ours_s,
        "baseline_rows_per_s": rows / raw_s,
        "ratio": raw_s / ours_s,
        "arrow_build_rows_per_s": rows / arrow_s,
        "chdb_rows_per_s": chdb["rows_per_s"],
        "chdb_arrow_rows_per_s": chdb["arrow_rows_per_s"],
        "chdb": chdb,
    }
