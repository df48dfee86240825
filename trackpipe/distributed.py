"""Distributed wiring: edges -> Kafka -> Faust workers -> ClickHouse server."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ingest.app import build_edge_app
from ingest.config.kafka_store import KafkaConfigStore
from ingest.produce.kafka_publisher import KafkaPublisher
from processors.batch import OutcomeCounts
from processors.runtime.faust.topology import TopologyNames
from schemas.rows import ProcessedBatch
from sinks.clickhouse_sink import ClickHouseSink
from sinks.server_backend import ServerBackend
from trackpipe.metrics import serve_worker_metrics
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
    """Create the events and dead-letter topics when missing. True if anything was created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_security())
    await admin.start()
    try:
        existing = set(await admin.list_topics())

        names = TopologyNames(settings.kafka_topic, settings.worker_app_id)
        compact = {"cleanup.policy": "compact"}
        missing = [
            NewTopic(
                name,
                settings.partitions,
                settings.kafka_replication,
                topic_configs=compact if name in names.compacted() else None,
            )
            for name in names.all()
            if name not in existing
        ]
        if settings.kafka_stream_topic() not in existing:
            # the public stream: keyed by project, kept for the resumable window
            retention_ms = int(settings.stream_retention_days * 86_400_000)
            missing.append(
                NewTopic(
                    settings.kafka_stream_topic(),
                    settings.partitions,
                    settings.kafka_replication,
                    topic_configs={"retention.ms": str(retention_ms)},
                )
            )
        if names.endpoints not in existing:  # the delivery endpoints' circuit, shared by the workers
            missing.append(NewTopic(names.endpoints, 1, settings.kafka_replication, topic_configs=compact))
        if settings.kafka_config_topic() not in existing:
            # goals and links: one partition (one order for every edge to replay), latest record per key
            missing.append(
                NewTopic(
                    settings.kafka_config_topic(),
                    1,
                    settings.kafka_replication,
                    topic_configs={"cleanup.policy": "compact"},
                )
            )
        if not missing:
            return False
        response = await admin.create_topics(missing)
        for topic, code, *rest in getattr(response, "topic_errors", []):
            if code and code != TopicAlreadyExistsError.errno:
                raise RuntimeError(f"cannot create topic {topic}: error {code} {rest[0] if rest else ''}")
        return True
    finally:
        await admin.close()


def build_distributed_edge(settings: Settings) -> web.Application:
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="reports")
    backends: list[ServerBackend] = []

    def publisher() -> KafkaPublisher:
        return KafkaPublisher(
            settings.kafka_bootstrap,
            settings.kafka_topic,
            partitions=settings.partitions,
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
        stream=KafkaStreamSource(
            settings.kafka_bootstrap,
            settings.kafka_stream_topic(),
            settings.partitions,
            security=settings.kafka_security(),
        ),
    )


def build_worker_app(settings: Settings, counts: OutcomeCounts | None = None):
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
        topic=settings.kafka_topic,
        partitions=settings.partitions,
        writer=writer,
        batch_max=settings.worker_batch_max,
        batch_within_s=settings.worker_batch_within_s,
        store=settings.worker_store,
        stages=Stages(settings.processing_config()),
        broker_options=options,
        counts=counts,
    )


def run_worker(settings: Settings) -> None:
    import faulthandler
    import signal

    from faust.worker import Worker

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: stacks to stderr
    asyncio.run(ensure_topics(settings))  # the stage topics must exist before Faust subscribes
    counts = OutcomeCounts()
    app = build_worker_app(settings, counts)
    from trackpipe.outbound.metrics import OutboundCounts
    from trackpipe.outbound.worker import WorkerOutbound  # the edge never loads the delivery engine

    backends: list[ServerBackend] = []

    def log_backend() -> ServerBackend:  # created on first use, in the delivery log's thread
        if not backends:
            backends.append(server_backend(settings))
        return backends[0]

    outbound = WorkerOutbound(settings, log_backend, OutboundCounts())
    if settings.worker_metrics_port:
        serve_worker_metrics(
            counts, settings.worker_metrics_host, settings.worker_metrics_port, extra=[outbound.collector()]
        )
    # long-lived start-up objects (modules, Faust services) out of the collector's way, and fewer
    # young collections: the cores allocate many short-lived objects per event (docs/performance.md)
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    Worker(app, outbound, loglevel=settings.log_level).execute_from_commandline()
