"""Creating the pipeline's topics for its layout (``trackpipe topics create``, the worker at start, the
rescale's new generation) and reading / writing the layout record."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from processors.runtime.faust.topology import TopologyNames
from trackpipe.ops.kafka_view import LayoutRecord, read_layout
from trackpipe.ops.layout import LAYOUT_KEY, Generation, Layout
from trackpipe.settings import Settings

COMPACT = {"cleanup.policy": "compact"}


@dataclass
class TopicsResult:
    created: list[str] = field(default_factory=list)
    layout: Layout | None = None
    layout_written: bool = False


def names_of(settings: Settings) -> TopologyNames:
    return TopologyNames(settings.kafka_topic, settings.worker_app_id)


def generation_topics(settings: Settings, gen: Generation) -> list[NewTopic]:
    """A generation's processing topics (events input, stage topics, the tables' changelogs)."""
    names = names_of(settings).at(gen.generation)
    compacted = names.compacted()
    return [
        NewTopic(
            t, gen.partitions, settings.kafka_replication, topic_configs=COMPACT if t in compacted else None
        )
        for t in names.processing()
    ]


def layout_topics(settings: Settings, layout: Layout) -> list[NewTopic]:
    """Every topic of the pipeline for ``layout``."""
    names = names_of(settings)
    out: list[NewTopic] = []
    for _, gen in layout.generations():
        out += generation_topics(settings, gen)
    n, rf = layout.outputs_partitions, settings.kafka_replication
    compacted = names.compacted()
    out += [NewTopic(t, n, rf, topic_configs=COMPACT if t in compacted else None) for t in names.outputs()]
    retention_ms = int(settings.stream_retention_days * 86_400_000)  # the stream's resumable window
    out.append(
        NewTopic(settings.kafka_stream_topic(), n, rf, topic_configs={"retention.ms": str(retention_ms)})
    )
    # one partition: one order for every process to replay, the latest record per key
    out += [
        NewTopic(t, 1, rf, topic_configs=COMPACT) for t in [settings.kafka_config_topic(), *names.singles()]
    ]
    return out


async def create_topics(admin: AIOKafkaAdminClient, wanted: list[NewTopic]) -> list[str]:
    """Create those of ``wanted`` that do not exist; returns their names."""
    existing = set(await admin.list_topics())
    missing = [t for t in wanted if t.name not in existing]
    if not missing:
        return []
    response = await admin.create_topics(missing)
    for topic, code, *rest in getattr(response, "topic_errors", []):
        if code and code != TopicAlreadyExistsError.errno:
            raise RuntimeError(f"cannot create topic {topic}: error {code} {rest[0] if rest else ''}")
    return [t.name for t in missing]


async def load_layout(settings: Settings) -> LayoutRecord:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings.kafka_security(),
    )
    try:
        await consumer.start()
        return await read_layout(consumer, names_of(settings).layout)
    finally:
        await consumer.stop()


async def write_layout(settings: Settings, layout: Layout) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", **settings.kafka_security()
    )
    try:
        await producer.start()
        await producer.send_and_wait(
            names_of(settings).layout, layout.model_dump_json().encode(), LAYOUT_KEY, partition=0
        )
    finally:
        await producer.stop()


async def ensure_topics(settings: Settings) -> TopicsResult:
    """Create what the pipeline's layout needs and is missing; write the initial layout record when there
    is none (a new pipeline: generation 0 with ``TRACKPIPE_PARTITIONS``, or a pipeline made before the
    layout record existed, whose events topic gives the partition count)."""
    result = TopicsResult()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **settings.kafka_security())
    await admin.start()
    try:
        names = names_of(settings)
        result.created += await create_topics(
            admin, [NewTopic(names.layout, 1, settings.kafka_replication, topic_configs=COMPACT)]
        )
        record = await load_layout(settings)
        layout = record.layout
        if layout is None:
            partitions = settings.partitions
            if names.events in set(await admin.list_topics()):  # (a metadata request could create it)
                for t in await admin.describe_topics([names.events]):
                    if t.get("error_code", 0) == 0 and t.get("partitions"):
                        partitions = len(t["partitions"])  # an older pipeline: the events topic's count
            layout = Layout.initial(partitions)
        result.created += await create_topics(admin, layout_topics(settings, layout))
        if record.layout is None:
            await write_layout(settings, layout)
            result.layout_written = True
        result.layout = layout
        return result
    finally:
        await admin.close()
