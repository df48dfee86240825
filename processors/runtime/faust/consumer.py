"""A Faust consumer that never commits past a record it has not processed.

faust-streaming 0.15 can lose records around a rebalance (found by the two-worker scenario test,
issue 4): records fetched before a rebalance are dropped from the agents' queues
(``flow_control.clear()``) and must be fetched again after the new assignment. Two of its
behaviours let them slip instead:

1. ``seek_to_committed`` (aiokafka) only seeks partitions whose committed offset is > 0. A partition
   with no committed offset yet (or 0) keeps the fetch position it had before the rebalance, so
   the dropped records are never fetched again.
2. ``Consumer._new_offset`` decides what to commit from the acknowledged offsets, but skips its
   "is the head acknowledged?" check when the committed offset is None or 0, and lets a gap of
   exactly one record through otherwise (it compares against the committed offset as if it were the
   last processed record, but it is the next one to read). Acknowledging records behind a gap then
   commits past the gap.

:class:`GaplessConsumer` fixes both for the stream topics (changelogs are left to Faust's
recovery): such partitions are sought to their first available offset, remembered as their floor,
and nothing is committed until the record at the committed offset (or the floor) is acknowledged.
:meth:`GaplessConsumer.next_offset` tells the agents where a partition's next batch must start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from processors.runtime.faust import private

log = logging.getLogger(__name__)


class GaplessConsumer(aiokafka_driver.Consumer):
    """The aiokafka-driver consumer with safe seeks and commits for the stream topics."""

    #: topics whose offsets the agents commit (set per app by :func:`install_gapless_consumer`)
    stream_topics: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._floor: dict[TP, int] = {}

    def _is_stream_tp(self, tp: TP) -> bool:
        return tp.topic in self.stream_topics

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = dict(await super().seek_to_committed())
        fresh = [tp for tp, offset in committed.items() if not offset and self._is_stream_tp(tp)]
        if fresh:
            starts = await self.earliest_offsets(*fresh)
            await self.seek_wait({tp: starts[tp] for tp in fresh})
            for tp in fresh:
                self._floor[tp] = starts[tp]
            log.info("stream partitions without a committed offset sought to their start: %s", starts)
        for tp, offset in committed.items():
            if offset:
                self._floor.pop(tp, None)
        return committed

    def next_offset(self, tp: TP) -> int | None:
        """The offset the next record processed from ``tp`` must have (None: not known yet)."""
        committed = private.committed_offset(self, tp)
        return committed if committed is not None else self._floor.get(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._floor.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def _new_offset(self, tp: TP) -> int | None:  # overrides a private method: see private.py
        acked = private.acked_offsets(self, tp)
        if acked and self._is_stream_tp(tp):
            start = self.next_offset(tp)
            lowest = min(acked)
            if start is not None and lowest > start and not self._gap_covers(tp, start, lowest):
                return None  # the record at ``start`` is not processed yet: commit nothing
        return private.faust_new_offset(self, tp)

    def _gap_covers(self, tp: TP, start: int, end: int) -> bool:
        """Whether Faust recorded offsets ``start``..``end - 1`` as absent from the log (compaction,
        transaction markers), so there is nothing there to process."""
        intervals = private.gap_intervals(self, tp, start, end)
        if intervals is None:
            return False
        at = start
        for iv in sorted(intervals):
            if iv.begin > at:
                return False
            at = max(at, iv.end)
            if at >= end:
                return True
        return at >= end


def install_gapless_consumer(app: Any, stream_topics: set[str]) -> None:
    """Make ``app`` (a faust.App on the aiokafka driver) consume with :class:`GaplessConsumer`."""
    consumer_cls = type("AppGaplessConsumer", (GaplessConsumer,), {"stream_topics": frozenset(stream_topics)})
    transport = app.transport
    if isinstance(transport, aiokafka_driver.Transport):
        transport.Consumer = consumer_cls  # type: ignore[misc]  # per app, not per class


class InOrderAdmission:
    """Lets a stage process each stream partition's records exactly in offset order.

    Even with :class:`GaplessConsumer`, Faust can hand an agent a partition's records out of order
    around a rebalance (records fetched before the new assignment's seek, then the same records
    again; seen as batches like ``45, 59, 60, …`` in the two-worker test). The stages rely on order
    (the visitor stage's per-key watermark treats anything at or below it as applied), so per batch:

    - records of partitions no longer assigned are left to their new owner (not processed);
    - a record at the partition's next expected offset is admitted (expected = the committed offset
      at the start of a consumer generation, then one past the last admitted record);
    - a record below it was already processed: skipped (acknowledging it again is harmless);
    - a record beyond it (a hole) is *forgotten*: never processed, never acknowledged (so the
      consumer cannot commit past it), and the partition is sought back to the expected offset so
      the missing records and this one are fetched again, in order.
    """

    def __init__(self, reseek_after_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.generation: int | None = None
        self.expected: dict[TP, int] = {}
        self.sought: dict[TP, tuple[int, float]] = {}
        self.reseek_after_s = reseek_after_s
        self.clock = clock
        self.last_admitted: dict[TP, float] = {}
        self.stats = {"admitted": 0, "replayed": 0, "forgotten": 0, "revoked": 0, "seeks": 0}

    async def admit(self, app: Any, events: Sequence[Any]) -> list[Any]:
        generation = app.consumer_generation_id
        if generation != self.generation:
            self.generation = generation
            self.expected.clear()
            self.sought.clear()
            self.last_admitted.clear()
        consumer = app.consumer
        assigned = consumer.assignment()
        admitted: list[Any] = []
        seek_to: dict[TP, int] = {}
        retention_checked: set[TP] = set()
        for e in events:
            message = e.message
            tp, offset = message.tp, message.offset
            if tp not in assigned:
                self.stats["revoked"] += 1
                continue
            expected = self.expected.get(tp)
            if expected is None and isinstance(consumer, GaplessConsumer):
                expected = consumer.next_offset(tp)
            if expected is not None and offset > expected and tp not in retention_checked:
                retention_checked.add(tp)
                earliest = (await consumer.earliest_offsets(tp)).get(tp, 0)
                if earliest > expected:
                    log.warning(
                        "%s[%d]: offsets %d..%d are no longer in the log (retention): not processed",
                        tp.topic,
                        tp.partition,
                        expected,
                        earliest - 1,
                    )
                    expected = earliest
            if expected is None or offset == expected:
                admitted.append(e)
                self.expected[tp] = offset + 1
                self.sought.pop(tp, None)
                self.last_admitted[tp] = self.clock()
                self.stats["admitted"] += 1
            elif offset < expected:
                self.stats["replayed"] += 1
            else:
                message.acked = True  # the consumer will not record it: nothing past it is committed
                seek_to[tp] = min(seek_to.get(tp, expected), expected)
                self.expected[tp] = expected
                self.stats["forgotten"] += 1
        now = self.clock()
        for tp, offset in seek_to.items():
            last = self.sought.get(tp)
            if last is None or last[0] != offset or now - last[1] >= self.reseek_after_s:
                log.info(
                    "%s[%d]: records out of order, fetching again from %d", tp.topic, tp.partition, offset
                )
                await seek(consumer, tp, offset)
                self.sought[tp] = (offset, now)
                self.stats["seeks"] += 1
        return admitted


async def seek(consumer: Any, tp: TP, offset: int) -> None:
    """Seek ``tp`` in the consumer's own thread. Faust's ``Consumer.seek`` calls aiokafka's ``seek`` from
    the caller's thread, racing the fetcher running in the consumer thread: seen once in a 1M-event run
    as ``KeyError`` in aiokafka's ``fetched_records``, which crashed Faust's Fetcher and stopped the
    worker (faust-streaming 0.15.3, aiokafka 0.14). ``seek_wait`` runs it in that thread."""
    await consumer.seek_wait({tp: offset})


class StallWatchdog:
    """Restarts fetching of stream partitions that have records waiting but make no progress.

    Also seen in the two-worker test: after a rebalance a partition stayed out of Faust's set of
    fetched partitions (records waiting, nothing delivered, no error) until the worker restarted.
    Run every few seconds outside rebalances: a stream partition of this worker whose log end is past
    the next expected offset and that admitted nothing for ``stall_after_s`` is resumed and sought
    back to that offset (a partition busy in a long batch just sees its records again, skipped as
    replays)."""

    def __init__(
        self,
        admission: InOrderAdmission,
        stall_after_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.admission = admission
        self.stall_after_s = stall_after_s
        self.clock = clock
        self.lagging_since: dict[TP, float] = {}
        self.restarts = 0

    async def check(self, app: Any) -> None:
        consumer = app.consumer
        recovery = app.tables.recovery
        if app.rebalancing or not recovery.completed.is_set() or not isinstance(consumer, GaplessConsumer):
            self.lagging_since.clear()
            return
        mine = sorted(tp for tp in consumer.assignment() if consumer._is_stream_tp(tp))
        if not mine:
            return
        ends = await consumer.highwaters(*mine)
        now = self.clock()
        for tp in mine:
            active, paused = private.fetch_state(consumer, tp)
            expected = self.admission.expected.get(tp)
            if expected is None:
                expected = consumer.next_offset(tp)
            end = ends.get(tp)
            if expected is None or end is None or end <= expected:
                self.lagging_since.pop(tp, None)
                continue
            since = max(self.lagging_since.setdefault(tp, now), self.admission.last_admitted.get(tp, 0.0))
            if now - since < self.stall_after_s:
                continue
            log.warning(
                "%s[%d]: no progress for %.0fs with records %d..%d waiting (active=%s, paused=%s):"
                " fetching again",
                tp.topic,
                tp.partition,
                now - since,
                expected,
                end - 1,
                active,
                paused,
            )
            consumer.resume_partitions({tp})
            await seek(consumer, tp, expected)
            self.lagging_since[tp] = now
            self.restarts += 1
