"""Stage 2b, one Faust worker from Kafka to ClickHouse, next to a plain aiokafka consumer of the same topic.

The worker is ``trackpipe worker`` itself (the real wiring: ``build_faust_app`` with the ClickHouse
writer, on the real broker and server), in its own process, so the measure follows the processors as
they grow. It is started on an empty topic and warmed up with one record (its consumer group has joined
and its first write went through); then the recorded stream is produced as envelope records made by the
edge's accumulator (~100 events per record, 4 partitions) and the clock runs from the first record
produced to the moment ClickHouse holds every event (``events_raw``, polled every 50 ms).

The raw baseline reads the same records with a bare aiokafka consumer in another process
(:mod:`bench.raw_consumer`); its events/s is records/s times events per record.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import stream
from bench.kafka_topics import create_topics
from bench.procs import Proc, run_module
from bench.profiles import Profile
from bench.servers import Servers
from sinks.server_backend import ServerBackend
from trackpipe.settings import Settings

PARTITIONS = 4
#: Records per worker batch when the worker cannot run a backlog of this stream with its default (2,000):
#: a worker that sends each stage's output for a partition as one Kafka record, unbounded in size, makes
#: records over the producer's 1 MB ``max_request_size`` from a full batch and fail-stops (status 70; see
#: docs/performance.md). Such a worker is run with batches small enough that its largest output record
#: (conversion rows: up to ~2.5 * N^2 rows of ~1.6 kB per partition) stays under 1 MB.
SMALL_BATCH_MAX = 10


def _worker_bounds_records() -> bool:
    """Whether ``trackpipe worker`` splits its output records by size (processors.messages'
    ``encode_message_records``), so it can run with its default batch size."""
    from processors.runtime.faust import port as faust_app

    return hasattr(faust_app, "encode_message_records")


async def _produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type="lz4",
        linger_ms=5,
        max_request_size=2_000_000,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=payload, partition=p) for p, payload in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _raw_consumer(servers: Servers, topic: str, expect: int, work: Path) -> dict[str, Any]:
    out = work / "raw_consumer.json"
    group = f"bench-raw-{uuid.uuid4().hex[:8]}"
    args = ["--bootstrap", servers.kafka, "--topic", topic, "--group", group, "--expect", str(expect)]
    run_module("bench.raw_consumer", [*args, "--out", str(out)], timeout=180)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _wait_rows(
    backend: ServerBackend,
    want: int,
    proc: Proc,
    within_s: float,
    rss: list[tuple[int, float]] | None = None,
) -> tuple[float, int]:
    """Poll ``events_raw`` until it holds ``want`` rows; (time it did, rows seen at the first poll).
    ``rss`` receives (rows in ClickHouse, worker RSS in MB) at each poll."""
    deadline = time.monotonic() + within_s
    first: int | None = None
    while True:
        if proc.p.poll() is not None:
            raise RuntimeError(f"trackpipe worker exited {proc.p.returncode}:\n{proc.tail()}")
        have = int(backend.query("SELECT count() FROM events_raw")[0][0])
        if rss is not None:
            rss.append((have, proc.rss_mb()))
        if first is None:
            first = have
        if have >= want:
            return time.perf_counter(), first
        if time.monotonic() > deadline:
            raise RuntimeError(f"ClickHouse holds {have} of {want} events after {within_s}s:\n{proc.tail()}")
        time.sleep(0.05)


def _settled_cpu(proc: Proc, within_s: float = 60.0, every_s: float = 0.5, quiet_share: float = 0.1) -> float:
    """The worker's CPU seconds once it has gone quiet (under ``quiet_share`` of a core for ``every_s``):
    what runs after the last row reached ClickHouse (the outbound planner on the conversion rows, the
    stream, commits) counted too."""
    deadline = time.monotonic() + within_s
    last = proc.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(every_s)
        now = proc.cpu_seconds()
        if now - last < quiet_share * every_s:
            return now
        last = now
    return last


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of RSS (MB) over events in ClickHouse (MB per event)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def bench_worker(servers: Servers, profile: Profile, work: Path) -> dict[str, Any]:
    events = stream.recorded_events(profile.worker_events, seed=31)
    records = stream.envelope_records(
        events, partitions=PARTITIONS, events_per_record=profile.events_per_record
    )
    warm = stream.envelope_records(stream.recorded_events(1, seed=32), partitions=PARTITIONS)
    batch_max = None if _worker_bounds_records() else SMALL_BATCH_MAX
    suffix = uuid.uuid4().hex[:10]
    topic, database = f"bench-worker-{suffix}", f"bench_worker_{suffix}"
    env = {
        "TRACKPIPE_KAFKA_BOOTSTRAP": servers.kafka,
        "TRACKPIPE_KAFKA_TOPIC": topic,
        "TRACKPIPE_PARTITIONS": str(PARTITIONS),
        "TRACKPIPE_CLICKHOUSE_HOST": servers.clickhouse_host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(servers.clickhouse_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": database,
        "TRACKPIPE_WORKER_APP_ID": f"bench-worker-{suffix}",
        "TRACKPIPE_WORKER_METRICS_PORT": "0",
    }
    if batch_max is not None:
        env["TRACKPIPE_WORKER_BATCH_MAX"] = str(batch_max)
    create_topics(servers.kafka, topic, PARTITIONS, env)
    run_module("trackpipe.cli", ["migrate"], timeout=120, env=env)

    backend = ServerBackend(servers.clickhouse_host, servers.clickhouse_port, database)
    proc = Proc("trackpipe.cli", ["worker"], work / "worker.log", env)
    try:
        t_start = time.perf_counter()
        asyncio.run(_produce(servers.kafka, topic, warm))
        warm_s = _wait_rows(backend, 1, proc, 120)[0] - t_start
        cpu0 = proc.cpu_seconds()
        idle_rss = proc.rss_mb()  # started, joined, one batch written: the worker's own footprint
        rss: list[tuple[int, float]] = []
        t0 = time.perf_counter()
        asyncio.run(_produce(servers.kafka, topic, records))
        produced_s = time.perf_counter() - t0
        t1, _ = _wait_rows(backend, 1 + len(events), proc, max(240.0, len(events) / 1000), rss)
        end_rss = proc.rss_mb()
        end_anon, end_file = proc.rss_mb("RssAnon"), proc.rss_mb("RssFile")
        seconds = t1 - t0
        cpu_s = proc.cpu_seconds() - cpu0
        cpu_share = cpu_s / seconds
        peak_rss_at_rows = proc.peak_rss_mb()
        drained_cpu_s = _settled_cpu(proc) - cpu0
        # the peak over all of the stream's work: the outbound planner still drains conversion rows after
        # the last row reached ClickHouse (decision 168)
        peak_rss = proc.peak_rss_mb()
    finally:
        proc.stop()
        backend.close()
        with ServerBackend(servers.clickhouse_host, servers.clickhouse_port, "default") as admin:
            admin.command(f"DROP DATABASE IF EXISTS `{database}`")

    base = _raw_consumer(servers, topic, len(warm) + len(records), work)
    visitors = len({(e.project_id, e.visitor_id) for e in events})
    events_per_record = len(events) / len(records)
    baseline_events_per_s = base["records_per_s"] * events_per_record
    events_per_s = len(events) / seconds
    return {
        "events": len(events),
        "records": len(records),
        "events_per_record": events_per_record,
        "events_per_s": events_per_s,
        "seconds": seconds,
        "produce_s": produced_s,
        "startup_s": warm_s,
        "cpu_share": cpu_share,
        # per CPU second of the worker: what it would do with a core of its own (the wall-clock figure
        # drops with the share of the 2 cores the worker gets on a busy machine)
        "events_per_cpu_s": len(events) / cpu_s if cpu_s else 0.0,
        # the same with the CPU the worker spends after the last row reached ClickHouse (its outbound
        # planner drains the conversion rows) until it goes quiet: all of its work per event
        "events_per_cpu_s_drained": len(events) / drained_cpu_s if drained_cpu_s else 0.0,
        "peak_rss_mb": peak_rss,
        "peak_rss_mb_at_rows": peak_rss_at_rows,
        # memory (issue 16 item 2): RSS before the stream, at its end, its growth per 100k events (least
        # squares over the polls) and per live visitor (every visitor of the stream is active within the
        # windows: the stream spans minutes of event time)
        "idle_rss_mb": idle_rss,
        "end_rss_mb": end_rss,
        "end_rss_anon_mb": end_anon,  # heap, Python objects, native buffers
        "end_rss_file_mb": end_file,  # mapped files: shared libraries, RocksDB's files
        "rss_mb_per_100k_events": _slope(rss) * 100_000,
        "live_visitors": visitors,
        "bytes_per_active_visitor": max(0.0, end_rss - idle_rss) * 1024 * 1024 / visitors
        if visitors
        else 0.0,
        "store": os.environ.get("TRACKPIPE_WORKER_STORE") or Settings.model_fields["worker_store"].default,
        "baseline_events_per_s": baseline_events_per_s,
        "baseline_records_per_s": base["records_per_s"],
        "baseline_cpu_share": base["cpu_share"],
        "baseline_events_per_cpu_s": baseline_events_per_s / base["cpu_share"] if base["cpu_share"] else 0.0,
        "ratio": events_per_s / baseline_events_per_s if baseline_events_per_s else 0.0,
        "batch_max_records": batch_max or 0,  # 0: the worker's default
    }
