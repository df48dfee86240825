"""``trackpipe ops rescale|rollback|finalize``: move the pipeline onto a generation of processing topics
with another partition count, while the edges keep answering (docs/rescaling.md).

Each step is recorded in the layout record before it is acted on, so an interrupted rescale is resumed
(``--resume``) from where it stood:

1. **prepare** — create the target generation's topics (events input, stage topics, changelogs).
2. **switching** — the edges follow the layout and move to the target's events topic; each says so on
   the layout topic once everything it accepted before is durable in the old topic. Wait for every
   live edge.
3. **draining** — the old events topic's end offsets are the fence: nothing is added behind it. Wait
   until the old generation's workers have committed everything up to the fence and every stage
   topic is consumed (the same offsets seen twice).
4. **moving** — copy the old generation's state (the latest value of every key of each stage table's
   changelog) into the target's changelogs, each key at ``partition_for(key, N)`` — the partitioner the
   edges and the processors use; keys only the target holds (a rollback onto an older generation) get
   tombstones.
5. **cut over** — the layout names the target as current (the old one as ``previous``): the workers
   restart into it, recover the moved state and process the events queued in the new topic since the
   switch. Processing pauses from the switch until then: drain + move + restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from processors.messages import STAGES
from schemas.partitioning import partition_for
from trackpipe.ops.follow import EDGE_ALIVE_S
from trackpipe.ops.kafka_view import KafkaView
from trackpipe.ops.layout import Generation, Layout, Phase
from trackpipe.ops.topics import create_topics, generation_topics, load_layout, names_of, write_layout
from trackpipe.settings import Settings

log = logging.getLogger(__name__)

POLL_S = 0.5


class RescaleError(RuntimeError):
    """The rescale cannot go on; the message says why and what to do."""


@dataclass
class RescaleReport:
    source: Generation
    target: Generation
    steps_s: dict[str, float] = field(default_factory=dict)
    keys_moved: dict[str, int] = field(default_factory=dict)
    pause_s: float | None = None  # from the switch until the target's workers committed their first batch


async def _wait(what: str, check: Callable[[], object], timeout_s: float, say: Callable[[str], None]) -> None:
    """Until ``check()`` is true, or ``timeout_s``. Kafka unavailable (a broker restarting) is not yet true:
    the wait rides a rolling restart out rather than leaving the rescale to ``--resume``."""
    deadline = time.monotonic() + timeout_s
    last = 0.0
    while True:
        unavailable: Exception | None = None
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
        except (KafkaError, OSError) as exc:
            result, unavailable = False, exc
        if result:
            return
        why = f" (Kafka unavailable: {unavailable})" if unavailable is not None else ""
        if time.monotonic() > deadline:
            raise RescaleError(f"timed out after {timeout_s:.0f}s waiting for {what}{why}")
        if time.monotonic() - last > 10:
            say(f"  waiting for {what} ...{why}")
            last = time.monotonic()
        await asyncio.sleep(POLL_S)


class Rescaler:
    def __init__(
        self,
        settings: Settings,
        say: Callable[[str], None] = print,
        timeout_s: float = 600.0,
        checkpoint: Callable[[str], None] | None = None,
    ):
        """``checkpoint``: a test seam, called with ``"moved <stage>"`` once a stage's state is durable in
        the target (the fault tests stop the process there to kill it mid-move)."""
        self.settings = settings
        self.say = say
        self.timeout_s = timeout_s
        self.checkpoint = checkpoint or (lambda _point: None)
        self.names = names_of(settings)

    async def layout(self) -> Layout:
        record = await load_layout(self.settings)
        if record.layout is None:
            raise RescaleError("the pipeline has no layout record: run `trackpipe topics create` first")
        return record.layout

    async def _write(self, layout: Layout) -> Layout:
        layout = layout.model_copy(update={"updated_at": datetime.now(UTC)})
        await write_layout(self.settings, layout)
        return layout

    # -- entry points -------------------------------------------------------------------------------

    async def rescale(self, partitions: int) -> RescaleReport:
        layout = await self.layout()
        if layout.phase != Phase.STABLE:
            raise RescaleError(
                f"a rescale is in progress ({layout.phase.value}): `trackpipe ops rescale --resume`"
            )
        if layout.previous is not None:
            raise RescaleError(
                f"generation {layout.previous.generation} is still kept for a rollback: run `trackpipe ops"
                " finalize` (or `trackpipe ops rollback`) first"
            )
        if partitions == layout.current.partitions:
            raise RescaleError(f"the pipeline already has {partitions} partitions")
        target = Generation(generation=layout.current.generation + 1, partitions=partitions)
        return await self._run(layout, target, keep_previous=True)

    async def rollback(self) -> RescaleReport:
        layout = await self.layout()
        if layout.phase != Phase.STABLE:
            raise RescaleError(
                f"a rescale is in progress ({layout.phase.value}): finish it with `trackpipe ops rescale"
                " --resume`, then roll back"
            )
        if layout.previous is None:
            raise RescaleError("no previous generation is kept (nothing to roll back to)")
        return await self._run(layout, layout.previous, keep_previous=False)

    async def resume(self) -> RescaleReport:
        layout = await self.layout()
        if layout.phase == Phase.STABLE or layout.target is None:
            raise RescaleError("no rescale is in progress")
        keep = layout.target.generation > layout.current.generation
        return await self._run(layout, layout.target, keep_previous=keep)

    async def finalize(self) -> list[str]:
        """Delete the processing topics and consumer groups of every generation but the live one."""
        layout = await self.layout()
        if layout.phase != Phase.STABLE:
            raise RescaleError(f"a rescale is in progress ({layout.phase.value})")
        live = self.names.at(layout.current.generation)
        keep = set(live.processing()) | {f"{live.app}-__assignor-__leader"}
        admin = self._admin()
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            doomed = sorted(t for t in existing if self._retired_topic(t, layout) and t not in keep)
            if doomed:
                await admin.delete_topics(doomed)
        finally:
            await admin.close()
        await self._write(layout.model_copy(update={"previous": None}))
        return doomed

    def _retired_topic(self, topic: str, layout: Layout) -> bool:
        """A processing topic of a generation other than the live one (by its name)."""
        live = layout.current.generation
        for gen in range(0, max(live, layout.previous.generation if layout.previous else 0) + 2):
            if gen == live:
                continue
            names = self.names.at(gen)
            if topic in names.processing() or topic == f"{names.app}-__assignor-__leader":
                return True
        return False

    # -- the protocol -------------------------------------------------------------------------------

    def _admin(self) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap, **self.settings.kafka_security()
        )

    async def _run(self, layout: Layout, target: Generation, *, keep_previous: bool) -> RescaleReport:
        source = layout.current
        report = RescaleReport(source, target)
        self.say(
            f"rescale: generation {source.generation} ({source.partitions} partitions) -> generation"
            f" {target.generation} ({target.partitions} partitions)"
        )
        t0 = time.monotonic()
        if layout.phase == Phase.STABLE:
            admin = self._admin()
            await admin.start()
            try:
                created = await create_topics(admin, generation_topics(self.settings, target))
            finally:
                await admin.close()
            self.say(f"  prepared: {len(created)} topic(s) created for generation {target.generation}")
            layout = await self._write(
                layout.model_copy(update={"phase": Phase.SWITCHING, "target": target, "fence": {}})
            )
        report.steps_s["prepare"] = time.monotonic() - t0
        switched_at = time.monotonic()
        if layout.phase == Phase.SWITCHING:
            await self._edges_on(target)
            fence = await self._fence(source)
            layout = await self._write(layout.model_copy(update={"phase": Phase.DRAINING, "fence": fence}))
            self.say(f"  switched: every edge produces to generation {target.generation}; fence {fence}")
        report.steps_s["switch"] = time.monotonic() - switched_at
        t1 = time.monotonic()
        if layout.phase == Phase.DRAINING:
            await self._drained(source, {int(k): v for k, v in layout.fence.items()})
            layout = await self._write(layout.model_copy(update={"phase": Phase.MOVING}))
            self.say(f"  drained: generation {source.generation} processed everything up to the fence")
        report.steps_s["drain"] = time.monotonic() - t1
        t2 = time.monotonic()
        if layout.phase == Phase.MOVING:
            report.keys_moved = await self._move(source, target)
            self.say(f"  moved: {sum(report.keys_moved.values())} state keys ({report.keys_moved})")
        report.steps_s["move"] = time.monotonic() - t2
        cut = time.monotonic()
        layout = await self._write(
            Layout(
                current=target,
                outputs_partitions=layout.outputs_partitions,
                phase=Phase.STABLE,
                previous=source if keep_previous else None,
            )
        )
        self.say(f"  cut over: generation {target.generation} is live; the workers restart into it")
        await self._processing(target)
        report.steps_s["restart"] = time.monotonic() - cut
        report.pause_s = time.monotonic() - switched_at
        self.say(
            f"rescale done: processing paused {report.pause_s:.1f}s (drain {report.steps_s['drain']:.1f}s,"
            f" move {report.steps_s['move']:.1f}s, restart {report.steps_s['restart']:.1f}s)"
            + (f"; `trackpipe ops rollback` returns to generation {source.generation} until `trackpipe ops"
               " finalize`" if keep_previous else "")
        )  # fmt: skip
        live = self.names.at(target.generation)
        self.say(
            f"  autoscaling: a KEDA Kafka trigger now watches consumerGroup={live.app} topic={live.events_in}"
            f" with maxReplicaCount={target.partitions}; set TRACKPIPE_PARTITIONS={target.partitions}"
        )
        return report

    async def _edges_on(self, target: Generation) -> None:
        async def all_switched() -> bool:
            record = await load_layout(self.settings)
            now = time.time()
            alive = {k: b for k, b in record.edges.items() if now - b.at <= EDGE_ALIVE_S}
            return all(b.generation == target.generation for b in alive.values())

        await _wait(
            "every live edge to produce to the new generation", all_switched, self.timeout_s, self.say
        )

    async def _fence(self, source: Generation) -> dict[int, int]:
        topic = self.names.at(source.generation).events_in
        async with KafkaView(self.settings.kafka_bootstrap, self.settings.kafka_security()) as view:
            ends = await view.end_offsets([TopicPartition(topic, p) for p in range(source.partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}

    async def _drained(self, source: Generation, fence: dict[int, int]) -> None:
        names = self.names.at(source.generation)
        stage_topics = [names.stage(s) for s in STAGES]
        seen: list[dict[tuple[str, int], int]] = []
        # one view (admin client + offsets consumer) and one read of the topics for the whole wait: the
        # source generation's topics do not change while it drains
        view = KafkaView(self.settings.kafka_bootstrap, self.settings.kafka_security())

        async def done() -> bool:
            group = await view.group(names.app, "processing", [names.events_in, *stage_topics], facts)
            events_ok = all(
                (p.committed or 0) >= fence.get(p.partition, 0)
                for p in group.lags
                if p.topic == names.events_in
            )
            stages_ok = all(p.lag == 0 for p in group.lags if p.topic != names.events_in)
            ends = {(p.topic, p.partition): p.end for p in group.lags}
            stable = bool(seen) and seen[-1] == ends
            seen.append(ends)
            return events_ok and stages_ok and stable

        async with view:
            facts = await view.topics()
            await _wait(
                f"generation {source.generation}'s workers to process everything up to the fence",
                done,
                self.timeout_s,
                self.say,
            )

    async def _move(self, source: Generation, target: Generation) -> dict[str, int]:
        src, dst = self.names.at(source.generation), self.names.at(target.generation)
        security = self.settings.kafka_security()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False, **security
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            **security,
        )
        await consumer.start()
        await producer.start()
        moved: dict[str, int] = {}
        try:
            for stage in STAGES:
                state = await _read_table(consumer, src.changelog(stage), source.partitions)
                existing = await _read_table(consumer, dst.changelog(stage), target.partitions)
                futures = []
                for key, value in state.items():
                    if existing.get(key) == value:
                        continue
                    part = partition_for(key.decode(), target.partitions)
                    futures.append(await producer.send(dst.changelog(stage), value, key, partition=part))
                for key in existing.keys() - state.keys():
                    part = partition_for(key.decode(), target.partitions)
                    futures.append(await producer.send(dst.changelog(stage), None, key, partition=part))
                for fut in futures:
                    await fut
                moved[stage] = len(state)
                self.checkpoint(f"moved {stage}")
        finally:
            await producer.stop()
            await consumer.stop()
        return moved

    async def _processing(self, target: Generation) -> None:
        """Wait until the target generation's workers have joined and committed a batch (or have
        nothing to do: no event queued)."""
        names = self.names.at(target.generation)

        async def running() -> bool:
            async with KafkaView(self.settings.kafka_bootstrap, self.settings.kafka_security()) as view:
                facts = await view.topics()
                group = await view.group(names.app, "processing", [names.events_in], facts)
            if not group.members:
                return False
            queued = sum(p.end for p in group.lags)
            return queued == 0 or any((p.committed or 0) > 0 for p in group.lags)

        await _wait(f"generation {target.generation}'s workers to process", running, self.timeout_s, self.say)


async def _read_table(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> dict[bytes, bytes]:
    """The latest value of every key of a changelog (deleted keys left out)."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    starts = await consumer.beginning_offsets(tps)
    for tp in tps:
        consumer.seek(tp, starts[tp])
    state: dict[bytes, bytes] = {}
    remaining = {tp for tp in tps if ends[tp] > starts[tp]}
    deadline = time.monotonic() + 300
    while remaining:
        if time.monotonic() > deadline:
            raise RescaleError(f"{topic} not read to its end within 300 s")
        batches = await consumer.getmany(*remaining, timeout_ms=500)
        for records in batches.values():
            for r in records:
                if r.key is None:
                    continue
                if r.value is None:
                    state.pop(r.key, None)
                else:
                    state[r.key] = r.value
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    return state
