"""Distributed wiring: edges -> Kafka -> Faust workers -> ClickHouse server."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from ingest.app import build_edge_app
from ingest.config.kafka_store import KafkaConfigStore
from ingest.http.common import METRICS, SENDER
from ingest.produce.kafka_publisher import KafkaPublisher
from processors.batch import OutcomeCounts
from processors.runtime.faust.topology import TopologyNames
from schemas.rows import ProcessedBatch
from sinks.clickhouse_sink import ClickHouseSink
from sinks.server_backend import ServerBackend
from trackpipe.alerting.kafka_status import KafkaAlertStates
from trackpipe.memory_release import MemoryRelease, use_system_arrow_pool
from trackpipe.metrics import register_reports, serve_worker_metrics
from trackpipe.ops.follow import EdgeBeats, LayoutFollower
from trackpipe.ops.layout import Generation, Layout, Phase
from trackpipe.ops.status import startup_layout
from trackpipe.outbound.kafka_endpoints import KafkaAdminControl
from trackpipe.report_source import BackendReports
from trackpipe.settings import Settings
from trackpipe.stream.kafka_source import KafkaStreamSource

log = logging.getLogger(__name__)


def server_backend(settings: Settings, *, create_database: bool = False) -> ServerBackend:
    if create_database:
        admin = ServerBackend(
            settings.clickhouse_host,
            settings.clickhouse_port,
            "default",
            username=settings.clickhouse_user,
            password=settings.clickhouse_password.get_secret_value(),
            secure=settings.clickhouse_secure,
        )
        # identifiers cannot be bound as parameters; the name is validated by the settings pattern
        admin.command(f"CREATE DATABASE IF NOT EXISTS `{settings.clickhouse_database}`")
        admin.close()
    return ServerBackend(
        settings.clickhouse_host,
        settings.clickhouse_port,
        settings.clickhouse_database,
        username=settings.clickhouse_user,
        password=settings.clickhouse_password.get_secret_value(),
        secure=settings.clickhouse_secure,
    )


async def ensure_topics(settings: Settings) -> bool:
    """Create what the pipeline's layout needs (trackpipe.ops.topics). True if anything was created."""
    from trackpipe.ops.topics import ensure_topics as ensure

    result = await ensure(settings)
    return bool(result.created or result.layout_written)


def build_distributed_edge(settings: Settings, layout: Layout | None = None) -> web.Application:
    """The edge over ``layout`` (None: generation 0 with TRACKPIPE_PARTITIONS, as for a pipeline without
    a layout record): events go to the generation ``layout.produce_to`` — followed on the layout topic,
    so a rescale switches them (trackpipe.ops.follow) —; the outputs have ``layout.outputs_partitions``."""
    layout = layout or Layout.initial(settings.partitions)
    settings = settings.model_copy(update={"partitions": layout.outputs_partitions})
    names = TopologyNames(settings.kafka_topic, settings.worker_app_id)
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reports")
    backends: list[ServerBackend] = []
    security = settings.kafka_security()
    started: list[web.Application] = []

    def make_publisher(target: Generation) -> KafkaPublisher:
        return KafkaPublisher(
            settings.kafka_bootstrap,
            names.at(target.generation).events_in,
            partitions=target.partitions,
            max_record_bytes=settings.edge.max_record_bytes,
            security=security,
        )

    async def switch(new: Layout) -> None:
        target = new.produce_to
        if not started or SENDER not in started[0] or target.generation == beats.generation:
            return  # not serving yet: the publisher is made for the latest layout when it starts
        log.info("layout: switching the edge to generation %d (%d partitions)", target.generation,
                 target.partitions)  # fmt: skip
        await started[0][SENDER].switch(make_publisher(target))
        await beats.beat(target.generation)  # every event accepted before is durable in the old topic

    follower = LayoutFollower(settings.kafka_bootstrap, names.layout, security=security, on_change=switch)
    beats = EdgeBeats(settings.kafka_bootstrap, names.layout, security=security)

    async def layout_ctx(app: web.Application) -> AsyncIterator[None]:
        await beats.start()  # announced (generation -1) before the layout is read: docs/rescaling.md
        await follower.start()
        started.append(app)
        yield
        await follower.close()
        await beats.close()

    def publisher() -> KafkaPublisher:
        target = (follower.layout or layout).produce_to
        beats.generation = target.generation  # in the next beat
        return make_publisher(target)

    def backend() -> ServerBackend:
        # created on first use (in an executor thread): the edge starts even when ClickHouse is down
        if not backends:
            backends.append(server_backend(settings))
        return backends[0]

    alert_states = KafkaAlertStates(
        settings.kafka_bootstrap,
        TopologyNames(settings.kafka_topic, settings.worker_app_id).alert_status,
        security=security,
    )

    async def reports_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await alert_states.close()
        for b in backends:
            b.close()
        executor.shutdown(wait=False)

    config_store = KafkaConfigStore(
        settings.kafka_bootstrap, settings.kafka_config_topic(), security=settings.kafka_security()
    )
    app = build_edge_app(
        settings.edge,
        publisher,
        BackendReports(backend, executor),
        extra_cleanup=[layout_ctx, reports_ctx],
        config_store=config_store,
        admin_key=settings.admin_key_value(),
        read_keys=settings.read_keys_value(),
        metrics_key=settings.metrics_key_value(),
        outbound=settings.outbound,
        deliveries=KafkaAdminControl(
            settings.kafka_bootstrap,
            TopologyNames(settings.kafka_topic, settings.worker_app_id),
            settings.partitions,
            security=settings.kafka_security(),
        ),
        alert_states=alert_states,
        stream=KafkaStreamSource(
            settings.kafka_bootstrap,
            settings.kafka_stream_topic(),
            settings.partitions,
            security=settings.kafka_security(),
        ),
    )
    register_reports(app[METRICS].registry)  # /metrics: how the Top-5s were read
    return app


def build_worker_app(
    settings: Settings,
    counts: OutcomeCounts | None = None,
    layout: Layout | None = None,
    fail_stop: Callable[[int], None] = os._exit,
):  # -> faust.App
    """The Faust app processing ``layout.current`` (None: generation 0 with TRACKPIPE_PARTITIONS)."""
    layout = layout or Layout.initial(settings.partitions)
    from processors.runtime.faust.app import build_faust_app  # the edge never loads Faust

    backend = server_backend(settings)
    sink = ClickHouseSink(backend)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink")

    async def writer(batch: ProcessedBatch, token: str) -> None:
        await asyncio.get_running_loop().run_in_executor(executor, sink.write_batch, batch, token)

    from processors.pipeline import Stages

    options: dict[str, object] = {
        "broker_session_timeout": settings.worker_session_timeout_s,
        "broker_heartbeat_interval": settings.worker_heartbeat_interval_s,
        # `ops status` shows each group member's client id: which worker (host, pid) holds which partitions
        "broker_client_id": f"trackpipe-worker-{socket.gethostname()}-{os.getpid()}",
        # records fetched ahead per stream: Faust's default (4,096) counts messages, and ours are envelopes
        # of ~100 events (decision 143)
        "stream_buffer_maxsize": settings.worker_prefetch_records,
        # bytes fetched ahead per partition (Faust's default 1 MiB, x every input, stage and changelog
        # partition a worker holds; decision 165)
        "consumer_max_fetch_size": settings.worker_fetch_bytes,
    }
    use_system_arrow_pool()  # before the writer's first build (decision 172)
    if settings.worker_store.startswith("rocksdb"):
        # one RocksDB per table and partition, per generation (a partition number of another generation
        # holds other keys: its database and the offset it stores must not be reused)
        gen = layout.current.generation
        options["datadir"] = str(settings.data_dir / ("faust" if gen == 0 else f"faust-g{gen}"))
    return build_faust_app(
        app_id=settings.worker_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=settings.kafka_broker_credentials(),
        topic=settings.kafka_topic,
        partitions=layout.current.partitions,
        generation=layout.current.generation,
        output_partitions=layout.outputs_partitions,
        fail_stop=fail_stop,
        writer=writer,
        batch_max=settings.worker_batch_max,
        batch_within_s=settings.worker_batch_within_s,
        batch_slice_bytes=settings.worker_batch_slice_bytes,
        store=settings.worker_store,
        stages=Stages(settings.processing_config()),
        broker_options=options,
        counts=counts,
        after_batch=MemoryRelease(settings.worker_release_memory_s)
        if settings.worker_release_memory_s > 0
        else None,
    )


def _warn_partitions(settings: Settings, layout: Layout) -> None:
    if settings.partitions != layout.current.partitions and layout.phase == Phase.STABLE:
        logging.getLogger(__name__).warning(
            "TRACKPIPE_PARTITIONS is %d but the pipeline runs generation %d with %d partitions (its"
            " layout wins; `trackpipe ops rescale --partitions N` changes it)",
            settings.partitions,
            layout.current.generation,
            layout.current.partitions,
        )


def run_worker(settings: Settings) -> None:
    import faulthandler
    import signal

    from faust.worker import Worker

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: stacks to stderr
    asyncio.run(ensure_topics(settings))  # the stage topics must exist before Faust subscribes
    layout = asyncio.run(startup_layout(settings))  # LayoutMismatch: the CLI says what to do
    _warn_partitions(settings, layout)
    settings = settings.model_copy(update={"partitions": layout.outputs_partitions})
    counts = OutcomeCounts()
    from trackpipe.ops.worker_watch import LayoutWatch, restart_process

    names = TopologyNames(settings.kafka_topic, settings.worker_app_id)
    watch = LayoutWatch(
        settings.kafka_bootstrap,
        names.layout,
        layout.current.generation,
        security=settings.kafka_security(),
    )

    def fail_stop(status: int) -> None:
        """A batch that cannot complete ends the process unacknowledged; when the worker is stopping to
        restart into a new generation, it restarts (the new process replays from the committed offsets)."""
        if watch.restart_wanted:
            restart_process()
        os._exit(status)

    app = build_worker_app(settings, counts, layout, fail_stop)
    from trackpipe.outbound.metrics import OutboundCounts
    from trackpipe.outbound.worker import WorkerOutbound  # the edge never loads the delivery engine

    backends: list[ServerBackend] = []

    def log_backend() -> ServerBackend:  # created on first use, in the delivery log's thread
        if not backends:
            backends.append(server_backend(settings))
        return backends[0]

    outbound = WorkerOutbound(settings, log_backend, OutboundCounts(), generation=layout.current.generation)
    if settings.worker_metrics_port:
        from trackpipe.ops.lag_metrics import LagCollector

        lag = LagCollector(settings).start()  # consumer lag per stage and partition (autoscaling)
        serve_worker_metrics(
            counts,
            settings.worker_metrics_host,
            settings.worker_metrics_port,
            extra=[outbound.collector(), lag],
        )
    # long-lived start-up objects (modules, Faust services) out of the collector's way, and fewer
    # young collections: the cores allocate many short-lived objects per event (docs/performance.md)
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        Worker(app, outbound, watch, loglevel=settings.log_level).execute_from_commandline()
    except BaseException:  # SystemExit after a stop, or whatever a stop raised
        if watch.restart_wanted:  # a rescale cut over: start again on the live generation
            restart_process()
        raise
