"""Distributed wiring: edges -> Kafka -> Faust workers -> ClickHouse server."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from ingest.app import build_edge_app
from ingest.config.kafka_store import KafkaConfigStore
from ingest.produce.kafka_publisher import KafkaPublisher
from processors.batch import OutcomeCounts
from processors.runtime.faust.topology import TopologyNames
from schemas.rows import ProcessedBatch
from sinks.clickhouse_sink import ClickHouseSink
from sinks.server_backend import ServerBackend
from trackpipe.alerting.kafka_status import KafkaAlertStates
from trackpipe.metrics import serve_worker_metrics
from trackpipe.ops.layout import Layout, Phase
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
    a layout record): events go to the generation ``layout.produce_to``; the outputs have
    ``layout.outputs_partitions`` partitions."""
    layout = layout or Layout.initial(settings.partitions)
    settings = settings.model_copy(update={"partitions": layout.outputs_partitions})
    target = layout.produce_to
    events_topic = TopologyNames(settings.kafka_topic, settings.worker_app_id).at(target.generation).events_in
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reports")
    backends: list[ServerBackend] = []

    def publisher() -> KafkaPublisher:
        return KafkaPublisher(
            settings.kafka_bootstrap,
            events_topic,
            partitions=target.partitions,
            max_record_bytes=settings.edge.max_record_bytes,
            security=settings.kafka_security(),
        )

    def backend() -> ServerBackend:
        # created on first use (in an executor thread): the edge starts even when ClickHouse is down
        if not backends:
            backends.append(server_backend(settings))
        return backends[0]

    async def reports_ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        for b in backends:
            b.close()
        executor.shutdown(wait=False)

    config_store = KafkaConfigStore(
        settings.kafka_bootstrap, settings.kafka_config_topic(), security=settings.kafka_security()
    )
    return build_edge_app(
        settings.edge,
        publisher,
        BackendReports(backend, executor),
        extra_cleanup=[reports_ctx],
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
        alert_states=KafkaAlertStates(
            settings.kafka_bootstrap,
            TopologyNames(settings.kafka_topic, settings.worker_app_id).alert_status,
            security=settings.kafka_security(),
        ),
        stream=KafkaStreamSource(
            settings.kafka_bootstrap,
            settings.kafka_stream_topic(),
            settings.partitions,
            security=settings.kafka_security(),
        ),
    )


def build_worker_app(
    settings: Settings, counts: OutcomeCounts | None = None, layout: Layout | None = None
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
    }
    if settings.worker_store.startswith("rocksdb"):
        options["datadir"] = str(settings.data_dir / "faust")  # one RocksDB per table and partition
    return build_faust_app(
        app_id=settings.worker_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=settings.kafka_broker_credentials(),
        topic=settings.kafka_topic,
        partitions=layout.current.partitions,
        generation=layout.current.generation,
        output_partitions=layout.outputs_partitions,
        writer=writer,
        batch_max=settings.worker_batch_max,
        batch_within_s=settings.worker_batch_within_s,
        store=settings.worker_store,
        stages=Stages(settings.processing_config()),
        broker_options=options,
        counts=counts,
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
    app = build_worker_app(settings, counts, layout)
    from trackpipe.outbound.metrics import OutboundCounts
    from trackpipe.outbound.worker import WorkerOutbound  # the edge never loads the delivery engine

    backends: list[ServerBackend] = []

    def log_backend() -> ServerBackend:  # created on first use, in the delivery log's thread
        if not backends:
            backends.append(server_backend(settings))
        return backends[0]

    outbound = WorkerOutbound(settings, log_backend, OutboundCounts())
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
    Worker(app, outbound, loglevel=settings.log_level).execute_from_commandline()
