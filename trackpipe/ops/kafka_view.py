"""What the broker holds for one pipeline: its topics (partitions, replication), its layout record and
the edges' acknowledgements, and each of its consumer groups (state, members with their partitions,
committed offsets and lag per partition). Read-only."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import (
    CoordinatorNotAvailableError,
    GroupCoordinatorNotAvailableError,
    NotCoordinatorError,
)
from pydantic import ValidationError

from processors.runtime.faust.topology import TopologyNames
from trackpipe.ops.layout import EDGE_KEY_PREFIX, LAYOUT_KEY, EdgeBeat, Layout, TopicFact
from trackpipe.outbound.kafka_read import read_partition

T = TypeVar("T")


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: nothing committed yet (the group starts from the earliest offset)
    end: int
    lag: int


@dataclass
class GroupView:
    group_id: str
    role: str
    state: str = "absent"  # Kafka's group state (Stable, Empty, PreparingRebalance, ...) or absent
    members: list[Member] = field(default_factory=list)
    lags: list[PartitionLag] = field(default_factory=list)

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.lags)


@dataclass
class LayoutRecord:
    layout: Layout | None
    edges: dict[str, EdgeBeat]


def pipeline_groups(names: TopologyNames, layout: Layout) -> list[tuple[str, str, list[str]]]:
    """(group id, role, topics it consumes) of every consumer group of the pipeline."""
    out = []
    for role, gen in layout.generations():
        g = names.at(gen.generation)
        out.append((g.app, f"processing g{gen.generation} ({role})", [g.events_in, *_stage_topics(g)]))
    produce = names.at(layout.produce_to.generation)
    out += [
        (f"{names.app_id}-outbound-plan", "outbound planner", [names.conversions_out]),
        (f"{names.app_id}-outbound-send", "outbound sender", [names.deliveries]),
        (f"{names.app_id}-alert-traffic", "alert traffic forwarder", [produce.events_in]),
        (f"{names.app_id}-alerts", "alert evaluator", [names.alert_input]),
    ]
    return out


def _stage_topics(names: TopologyNames) -> list[str]:
    from processors.messages import STAGES

    return [names.stage(s) for s in STAGES]


def decode_layout(
    records: Iterable[tuple[bytes, bytes | None]], onto: LayoutRecord | None = None
) -> LayoutRecord:
    """The layout and the edges' beats from the layout topic's records, in order (latest wins), applied
    onto ``onto`` (what earlier records said) when given."""
    layout = onto.layout if onto is not None else None
    edges = dict(onto.edges) if onto is not None else {}
    for key, value in records:
        if key == LAYOUT_KEY and value is not None:
            with contextlib.suppress(ValidationError):
                layout = Layout.model_validate_json(value)
        elif key.startswith(EDGE_KEY_PREFIX.encode()):
            edge = key.decode()[len(EDGE_KEY_PREFIX) :]
            if value is None:
                edges.pop(edge, None)
            else:
                with contextlib.suppress(ValidationError):
                    edges[edge] = EdgeBeat.model_validate_json(value)
    return LayoutRecord(layout, edges)


async def read_layout(consumer: AIOKafkaConsumer, topic: str) -> LayoutRecord:
    records: list[tuple[bytes, bytes | None]] = []
    await read_partition(consumer, TopicPartition(topic, 0), lambda k, v: records.append((k, v)))
    return decode_layout(records)


class KafkaView:
    """One admin client and one offsets consumer, for a series of reads."""

    def __init__(self, bootstrap: str, security: dict[str, object]):
        self.bootstrap = bootstrap
        self.security = security
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", **security
        )

    async def __aenter__(self) -> KafkaView:
        await self.admin.start()
        try:
            await self.consumer.start()
        except BaseException:
            await self.admin.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def topics(self) -> dict[str, TopicFact]:
        names = await self.admin.list_topics()
        found: dict[str, TopicFact] = {}
        for t in await self.admin.describe_topics(sorted(n for n in names if not n.startswith("__"))):
            if t.get("error_code", 0) != 0:
                continue
            parts = t["partitions"]
            found[t["topic"]] = TopicFact(
                partitions=len(parts), replication=max((len(p["replicas"]) for p in parts), default=0)
            )
        return found

    async def layout(self, topic: str, exists: bool) -> LayoutRecord:
        if not exists:
            return LayoutRecord(None, {})
        return await read_layout(self.consumer, topic)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict(await self.consumer.end_offsets(tps)) if tps else {}

    async def group(
        self, group_id: str, role: str, topics: list[str], facts: dict[str, TopicFact]
    ) -> GroupView:
        view = GroupView(group_id, role)
        described = await self._retrying(lambda: self.admin.describe_consumer_groups([group_id]))
        if described is None:
            view.state = "unknown (no group coordinator yet)"
            return view
        for g in described[0].to_object()["groups"]:
            if g["group"] != group_id or g["error_code"] != 0:
                continue
            view.state = g["state"] or "absent"
            if view.state == "Dead":
                view.state = "absent"
            for m in g["members"]:
                parts: list[tuple[str, int]] = []
                with contextlib.suppress(Exception):  # a foreign protocol: members without partitions
                    decoded = ConsumerProtocolMemberAssignment.decode(m["member_assignment"])
                    parts = [(t, p) for t, ps in decoded.assignment for p in ps]
                view.members.append(Member(m["member_id"], m["client_id"], m["client_host"], tuple(parts)))
        committed = await self._retrying(lambda: self.admin.list_consumer_group_offsets(group_id)) or {}
        tps = [TopicPartition(t, p) for t in topics if t in facts for p in range(facts[t].partitions)]
        ends = await self.end_offsets(tps)
        starts = dict(await self.consumer.beginning_offsets(tps)) if tps else {}
        for tp in tps:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            end = ends.get(tp, 0)
            base = offset if offset is not None else starts.get(tp, 0)
            view.lags.append(PartitionLag(tp.topic, tp.partition, offset, end, max(0, end - base)))
        return view

    @staticmethod
    async def _retrying(call: Callable[[], Awaitable[T]], within_s: float = 10.0) -> T | None:
        """``call()``, retried while the group coordinator is not available (a new cluster creates
        ``__consumer_offsets`` on first use); None if it stays unavailable."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                return await call()
            except (GroupCoordinatorNotAvailableError, CoordinatorNotAvailableError, NotCoordinatorError):
                if time.monotonic() > deadline:
                    return None
                await asyncio.sleep(0.5)
