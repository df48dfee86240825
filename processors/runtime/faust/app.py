"""The Faust topology: one agent per stage, feeding envelope records to the same cores the embedded runner
uses (processors.pipeline.Stages), state in Faust tables; topic names in ``topology``.

Records are envelopes (many messages each), produced to an explicit partition computed like Kafka's
default partitioner (murmur2 of the key), and the tables use the same partitioner
(``use_partitioner=True``), so a key's state lives in the changelog partition of its input partition.

Exactness does not come from Faust's exactly-once mode (unreliable: faust-streaming #323, #502, #517)
but from idempotent state and sinks. Each agent hands its batches (``take_events``) to a
:class:`processors.batch.BatchRunner` over the stage's :class:`~processors.runtime.faust.port.StagePort`:
process -> write rows -> deliver outputs -> commit state to the changelog -> return, and
``take_events`` acks the offsets. Retriable failures are retried, records the sink refuses are
quarantined to the dead-letter topic (processors.batch). If the worker is stopped while a batch cannot
be completed, it exits (status 75) without acking (fail-stop); an unexpected error in the runner
itself makes it exit (status 70) without acking.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import faust
from faust.types import TP
from faust.types.auth import CredentialsT

from processors.batch import BatchRunner, OutcomeCounts, RetryPolicy
from processors.messages import STAGES, Stage
from processors.pipeline import ConversionPipeline, Stages
from processors.runtime.faust.consumer import InOrderAdmission, StallWatchdog, install_gapless_consumer
from processors.runtime.faust.port import BatchWriter, Outputs, StagePort, StageWork, TableStore
from processors.runtime.faust.topology import TopologyNames, topology_topics
from processors.store import Sweeper
from schemas.partitioning import partition_for

__all__ = ["TopologyNames", "build_faust_app", "partition_for", "topology_topics"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 20.0
WATCHDOG_EVERY_S = 5.0
#: RocksDB per table and partition (4 tables x the partitions a worker holds), bounded: Faust's defaults
#: (64 MB write buffers x 3, a 2 GB block cache, a 500 MB compressed cache, per database) let each database
#: keep up to ~200 MB of state in memory before a flush. These keep a worker's RocksDB share near
#: partitions x 4 x ~4 MB at most (two 1 MB memtables and a 2 MB block cache; decision 165).
ROCKSDB_OPTIONS: dict[str, int] = {
    "write_buffer_size": 2**20,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 2**20,
    # Faust's rocksdict path builds a cache of this size per database (and no compressed cache); reads
    # that miss it come from the page cache, which is the kernel's to bound (decision 165)
    "block_cache_size": 2 * 2**20,
    "block_cache_compressed_size": 2**20,
}

#: A batch taken from the stream is run in slices of at most this many bytes of input records (~5k events
#: of envelopes at ~860 bytes each): a slice's events, rows and stage messages are alive together (and the
#: cores pause the cyclic collector while they process it), so this bounds the processing's working set
#: (4 MiB since decision 165: 8 MiB peaked ~130 MB higher at 1M events, and was not faster). The batch's
#: records themselves stay alive until it is done: ``batch_max`` (32 by default since decision 174) bounds
#: those, and a batch of ~100-event envelopes is then a single slice.
BATCH_SLICE_BYTES = 4 * 2**20


def slices(events: Sequence[Any], limit: int = BATCH_SLICE_BYTES) -> list[Sequence[Any]]:
    """``events`` in order, cut where the next one would take a slice's values over ``limit`` bytes."""
    out: list[Sequence[Any]] = []
    start, size = 0, 0
    for i, e in enumerate(events):
        n = len(e.value) if isinstance(e.value, bytes | bytearray) else 0
        if i > start and size + n > limit:
            out.append(events[start:i])
            start, size = i, 0
        size += n
    if start < len(events):
        out.append(events[start:])
    return out


#: The app's producer (stage messages, outputs, changelogs): Faust's defaults (no linger, 16 kB batches) made
#: each changelog record that Faust's producer buffer hands on one at a time leave in a produce request of
#: its own, ~3,000 per visitor batch of 10k events, whose sending cost the worker (and the broker) more CPU
#: than the cores; 5 ms of linger (Kafka's own default since 4.0) and 256 kB batches make them a few dozen
#: (decision 160).
PRODUCER_OPTIONS: dict[str, Any] = {"producer_linger": 0.005, "producer_max_batch_size": 256 * 1024}

#: The worker retries longer between attempts than the embedded runner: its sink is a shared server.
WORKER_RETRY = RetryPolicy(max_backoff_s=30.0)


def build_faust_app(
    *,
    app_id: str,
    broker: str,
    broker_credentials: CredentialsT | None = None,
    topic: str,
    partitions: int,
    writer: BatchWriter,
    batch_max: int = 2000,
    batch_within_s: float = 0.5,
    batch_slice_bytes: int = BATCH_SLICE_BYTES,
    store: str = "memory://",
    broker_options: dict[str, Any] | None = None,
    pipeline: ConversionPipeline | None = None,
    stages: Stages | None = None,
    counts: OutcomeCounts | None = None,
    retry: RetryPolicy = WORKER_RETRY,
    generation: int = 0,
    output_partitions: int | None = None,
    fail_stop: Callable[[int], None] = os._exit,
    after_batch: Callable[[], None] | None = None,
) -> faust.App:
    """The worker app. ``broker_credentials`` (Faust's ``SSLCredentials`` / ``SASLCredentials``, from the
    wiring's settings; None: PLAINTEXT) secure every Kafka client of the app. ``counts`` (shared with the
    wiring's /metrics) receives every batch outcome; it is also ``app.conf.trackpipe_counts``.
    ``fail_stop(status)`` ends the process without acknowledging (default ``os._exit``; the wiring
    re-executes the worker instead when it is stopping to restart into a new generation).
    ``after_batch()`` runs after each batch taken from a stream is committed (the wiring returns the
    memory the batch freed to the system there)."""
    names = TopologyNames(topic, app_id, generation)
    app = faust.App(
        names.app,
        broker=broker,
        broker_credentials=broker_credentials,
        store=store,
        web_enabled=False,
        topic_partitions=partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=batch_max,
        broker_commit_interval=1.0,
        **{**PRODUCER_OPTIONS, **(broker_options or {})},
    )
    cores = stages or (pipeline.stages if pipeline else Stages(ConversionPipeline().config))
    counts = counts if counts is not None else OutcomeCounts()
    app.conf.trackpipe_counts = counts

    out_partitions = output_partitions or partitions

    def raw_topic(*names_: str, n: int = partitions) -> Any:
        return app.topic(
            *names_,
            value_type=bytes,
            value_serializer="raw",
            key_type=bytes,
            key_serializer="raw",
            partitions=n,
        )

    outputs = Outputs(
        stages={s: raw_topic(names.stage(s)) for s in STAGES},
        deadletter=raw_topic(names.deadletter, n=out_partitions),
        conversions=raw_topic(names.conversions_out, n=out_partitions),
        sessions=raw_topic(names.sessions_out, n=out_partitions),
        partitions=out_partitions,
    )
    input_topic_of: dict[Stage, str] = {s: names.stage(s) for s in STAGES}
    input_topic_of["visitor"] = names.events_in

    install_gapless_consumer(app, {names.events_in, *(names.stage(s) for s in STAGES)})

    sweeper = Sweeper()
    runners: dict[Stage, BatchRunner[Any, StageWork]] = {}
    for s in STAGES:
        table = app.Table(
            f"{s}-state",
            default=None,
            key_type=bytes,  # bytes -> the "raw" serializer, also for the changelog (recovery)
            value_type=bytes,
            schema=faust.Schema(
                key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            ),
            partitions=partitions,
            use_partitioner=True,
            options=dict(ROCKSDB_OPTIONS) if store.startswith("rocksdb") else None,
        )

        def owned(key: str, _s: Stage = s) -> bool:
            tp = TP(input_topic_of[_s], partition_for(key, partitions))
            return tp in app.assignor.assigned_actives()

        port = StagePort(
            s,
            app_id=names.app,
            names=names,
            cores=cores,
            table=TableStore(table, owned, partitions),
            outputs=outputs,
            writer=writer,
            partitions=partitions,
            sweeper=sweeper,
        )
        runners[s] = BatchRunner(port, s, counts, retry)

    order = InOrderAdmission()
    watchdog = StallWatchdog(order)

    @app.timer(interval=WATCHDOG_EVERY_S)
    async def restart_stalled_partitions() -> None:
        await watchdog.check(app)

    async def run_batch(stage: Stage, events: Sequence[Any]) -> None:
        admitted = await order.admit(app, events)
        for part in slices(admitted, batch_slice_bytes):  # each a whole batch, committed in turn
            await runners[stage].run(part)
        if after_batch is not None:
            after_batch()

    async def guarded(stage: Stage, events: Sequence[Any]) -> None:
        """Finish the batch even if the agent is cancelled (take_events acks in its ``finally``)."""
        task = asyncio.ensure_future(run_batch(stage, events))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and not task.cancelled() and task.exception() is None:
                raise
            done, _ = await asyncio.wait([task], timeout=SHUTDOWN_GRACE_S)
            if not done or task.cancelled() or task.exception() is not None:
                log.critical("stopped while a %s batch was not complete: exiting without ack", stage)
                fail_stop(75)
            raise
        except Exception:
            # take_events would ack the batch on the way out: never let an unfinished batch be acked
            log.critical("%s batch failed: exiting without ack (fail-stop)", stage, exc_info=True)
            fail_stop(70)

    def make_agent(stage: Stage, source: Any) -> None:
        async def agent(stream: faust.StreamT[bytes]) -> None:
            async for events in stream.take_events(batch_max, within=batch_within_s):  # type: ignore[attr-defined]
                await guarded(stage, events)

        agent.__name__ = f"{stage}_agent"
        app.agent(source, name=f"{names.app}.{stage}")(agent)

    make_agent("visitor", raw_topic(names.events_in, names.stage("visitor")))
    for s in STAGES:
        if s != "visitor":
            make_agent(s, raw_topic(names.stage(s)))
    return app
