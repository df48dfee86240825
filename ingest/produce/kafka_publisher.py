"""Envelope records to Kafka with an idempotent, acks=all aiokafka producer.

aiokafka's idempotent producer does not survive a failed record: the record's sequence number was spent,
so the broker refuses every later record of that partition with ``OutOfOrderSequenceNumber`` (and once
its sender task dies, every ``send`` raises the same error). A broker restart causes exactly that: a batch
whose partition had no leader for longer than the request timeout fails, and the producer is unusable
from then on. So after any failed delivery the publisher replaces its producer:

- the failing records are answered with a retriable :class:`PublishError` (the client gets 503 +
  Retry-After and sends them again); nothing is ever re-sent by the publisher, so an acknowledged record is
  never duplicated, and a record is reported durable only once Kafka acknowledged it;
- one replacement at a time: new records are refused (retriable) until it is done; the old producer is
  stopped first (its records still in flight end acknowledged or failed) so that it and the new one never
  write to a partition at the same time; it is retried until the broker takes a new producer;
- ``health()`` names the problem while a replacement is under way and while a light background metadata
  probe finds no broker, or a partition without a leader, so ``/healthz`` turns 503 during an outage and
  200 again on its own once the broker is back, traffic or not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from ingest.produce.publisher import PublishError

log = logging.getLogger(__name__)

#: Seconds a metadata probe may take before the broker counts as unreachable.
PROBE_TIMEOUT_S = 5.0


def _describe(exc: BaseException) -> str:
    name, text = type(exc).__name__, str(exc)
    return (text if text.startswith(name) else f"{name}: {text}" if text else name)[:200]


@dataclass
class _Generation:
    """One producer and the signal that the publisher gave up waiting for its acknowledgements."""

    producer: Any  # an AIOKafkaProducer (or a test double with its start/send/stop/client)
    number: int
    abandoned: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def abandon(self) -> None:
        if not self.abandoned.done():
            self.abandoned.set_result(None)


class KafkaPublisher:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        partitions: int,
        client_id: str = "trackpipe-edge",
        compression: str | None = "zstd",
        max_record_bytes: int = 1_000_000,
        security: dict[str, object] | None = None,
        request_timeout_ms: int = 30_000,
        probe_interval_s: float = 1.0,
        settle_timeout_s: float | None = None,
        producer_factory: Callable[[], Any] | None = None,
    ):
        """``request_timeout_ms`` is the producer's: a produce request's timeout, and how long a record
        whose partition has no leader waits before it fails. ``probe_interval_s``: how often the broker's
        metadata is probed for ``health()`` and a failed replacement is retried. ``settle_timeout_s``
        (default: the request timeout + 5 s): how long a producer being replaced or stopped may take to
        settle its records before the publisher gives up on it. ``producer_factory`` replaces the
        AIOKafkaProducer (tests)."""
        self.topic = topic
        self.partitions = partitions
        self._options: dict[str, Any] = dict(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            compression_type=compression,
            linger_ms=0,  # the edge's accumulator already lingers
            max_request_size=max_record_bytes + 64_000,
            request_timeout_ms=request_timeout_ms,
            **(security or {}),
        )
        self._factory = producer_factory or (lambda: AIOKafkaProducer(**self._options))
        self._probe_interval = probe_interval_s
        # A stopping producer gets this long to settle its records (they fail once their partition had no
        # leader for the request timeout) before the publisher stops waiting for it.
        self._settle_timeout = (
            request_timeout_ms / 1000 + 5.0 if settle_timeout_s is None else settle_timeout_s
        )
        self._current: _Generation | None = None
        self._generations = 0
        self._send_lock = asyncio.Lock()  # one hand-over at a time; a replacement waits for it
        self._replacing: str | None = None  # why the producer is being replaced (None: it is not)
        self._start_problem: str | None = None  # why the last attempt to start its replacement failed
        self._probe_problem: str | None = None
        self._replace_task: asyncio.Task[None] | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._leftovers: set[asyncio.Task[Any]] = set()  # producers given up on, still stopping
        self._closing = False
        self.replacements = 0

    async def start(self) -> None:
        self._current = await self._start_generation(need_leaders=False)
        self._probe_task = asyncio.create_task(self._probe_loop(), name="kafka-publisher-probe")

    def health(self) -> str | None:
        """Why records cannot be made durable now (None: they can)."""
        if self._replacing is not None:
            why = f"kafka producer is being replaced after a failed delivery ({self._replacing})"
            if self._start_problem is not None:
                why += f"; its replacement cannot start yet: {self._start_problem}"
            return why
        return self._probe_problem

    async def publish_many(self, records: list[tuple[int, bytes]]) -> list[BaseException | None]:
        return await (await self.enqueue_many(records))

    async def enqueue_many(self, records: list[tuple[int, bytes]]) -> Awaitable[list[BaseException | None]]:
        """Hand records to the producer, in order, and return what to await for their outcomes (one per
        record: None once acknowledged, else a PublishError). Records enqueued by one call go out before
        those of the next, so the sender can enqueue the next linger window while these are in flight.
        While the producer is being replaced every record fails at once (retriable)."""
        async with self._send_lock:
            gen = self._current
            if gen is None or self._replacing is not None:
                refused = PublishError(
                    f"events not sent: {self.health() or 'publisher stopped'}", retriable=True
                )
                return _at_once([refused] * len(records))
            futures: list[asyncio.Future[object]] = []
            for partition, payload in records:
                try:
                    futures.append(await gen.producer.send(self.topic, value=payload, partition=partition))
                except MessageSizeTooLargeError as exc:  # refused before it was sequenced: the record's fault
                    futures.append(
                        _failed(PublishError(f"kafka refused the record: {exc!r}", retriable=False))
                    )
                except KafkaError as exc:
                    futures.append(_failed(exc))
        return self._outcomes(gen, futures)

    async def _outcomes(
        self, gen: _Generation, futures: list[asyncio.Future[object]]
    ) -> list[BaseException | None]:
        gathered = asyncio.gather(*futures, return_exceptions=True)
        waits: set[asyncio.Future[Any]] = {gathered, gen.abandoned}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        outcomes: list[object] = (
            gathered.result()
            if gathered.done()
            # given up on: what was acknowledged stays acknowledged, the rest failed (and may still land)
            else [
                (f.exception() or f.result()) if f.done() and not f.cancelled() else _ABANDONED
                for f in futures
            ]
        )
        results: list[BaseException | None] = []
        for outcome in outcomes:
            if not isinstance(outcome, BaseException):
                results.append(None)
            elif isinstance(outcome, PublishError):
                results.append(outcome)
            else:
                self._replace(gen, outcome)
                results.append(
                    PublishError(f"kafka did not acknowledge the record: {outcome!r}", retriable=True)
                )
        return results

    def _replace(self, gen: _Generation, cause: BaseException) -> None:
        """A record of ``gen`` failed: its producer cannot be trusted any more. Replace it once."""
        if self._closing or gen is not self._current or self._replacing is not None:
            return
        self._replacing = _describe(cause)
        log.warning("kafka producer %d failed a delivery (%s); replacing it", gen.number, self._replacing)
        self._replace_task = asyncio.create_task(self._replace_producer(gen), name="kafka-producer-replace")

    async def _replace_producer(self, old: _Generation) -> None:
        async with self._send_lock:  # a hand-over under way finishes with the old producer
            self._current = None
        await self._settle(old)
        while not self._closing:
            try:
                new = await self._start_generation(need_leaders=True)
            except Exception as exc:
                self._start_problem = _describe(exc)
                log.warning("kafka producer replacement not started: %s; retrying", self._start_problem)
                await asyncio.sleep(self._probe_interval)
                continue
            self._current = new
            self._replacing = self._start_problem = self._probe_problem = None
            self.replacements += 1
            log.warning("kafka producer %d replaced producer %d", new.number, old.number)
            return

    async def _start_generation(self, *, need_leaders: bool) -> _Generation:
        producer = self._factory()
        try:
            await asyncio.wait_for(producer.start(), self._settle_timeout)
            # A full metadata fetch never auto-creates topics (a per-topic request might).
            cluster = await asyncio.wait_for(producer.client.fetch_all_metadata(), PROBE_TIMEOUT_S)
            found = cluster.partitions_for_topic(self.topic)
            if not found:
                raise PublishError(
                    f"topic {self.topic!r} does not exist; run 'trackpipe topics create'", retriable=False
                )
            leaderless = self._leaderless(cluster)
            if need_leaders and leaderless:
                raise PublishError(f"no leader for partitions {leaderless} of {self.topic}", retriable=True)
        except BaseException:
            await _stop_quietly(producer)
            raise
        if not self._generations:
            # The broker is the truth: group events by the partitions that exist (fixed from then on).
            self.partitions = len(found)
        self._generations += 1
        return _Generation(producer, self._generations)

    def _leaderless(self, cluster: Any) -> list[int]:
        partitions = cluster.partitions_for_topic(self.topic) or set()
        leaders = {p: cluster.leader_for_partition(TopicPartition(self.topic, p)) for p in partitions}
        return sorted(p for p, leader in leaders.items() if leader is None or leader < 0)

    async def _settle(self, gen: _Generation) -> None:
        """Stop ``gen``'s producer, letting it finish the records it holds (acknowledged or failed). If it
        cannot within the settle timeout, its unacknowledged records are answered as failed (retriable)
        and it goes on stopping in the background."""
        stopping = asyncio.ensure_future(gen.producer.stop())
        try:
            await asyncio.wait({stopping}, timeout=self._settle_timeout)
        finally:
            gen.abandon()
            if not stopping.done():
                log.warning(
                    "kafka producer %d did not stop in %.0fs; gave up on it", gen.number, self._settle_timeout
                )
                self._leftovers.add(stopping)
                stopping.add_done_callback(self._leftovers.discard)
        if stopping.done() and not stopping.cancelled() and stopping.exception() is not None:
            log.warning("kafka producer %d stopped with an error: %r", gen.number, stopping.exception())

    async def _probe_loop(self) -> None:
        # not `while True`: on Python 3.11 a cancellation that arrives while ``wait_for`` (in _probe) holds
        # an already-finished future is swallowed (CPython gh-86296, fixed in 3.12); stop() sets _closing
        # before it cancels, so the loop ends at its next turn either way
        while not self._closing:
            await asyncio.sleep(self._probe_interval)
            gen = self._current
            if gen is None or self._replacing is not None:
                continue  # health() reports the replacement
            problem = await self._probe(gen)
            if gen is self._current:  # not replaced meanwhile
                self._probe_problem = problem

    async def _probe(self, gen: _Generation) -> str | None:
        client = gen.producer.client
        try:
            updated = await asyncio.wait_for(client.force_metadata_update(), PROBE_TIMEOUT_S)
        except TimeoutError:
            return f"kafka unreachable: no metadata within {PROBE_TIMEOUT_S:.0f}s"
        except Exception as exc:
            return f"kafka metadata request failed: {_describe(exc)}"
        if not updated:
            return "kafka unreachable: no broker answered a metadata request"
        if not client.cluster.partitions_for_topic(self.topic):
            return f"kafka: topic {self.topic!r} is not in the cluster metadata"
        leaderless = self._leaderless(client.cluster)
        if leaderless:
            return f"kafka: no leader for partitions {leaderless} of {self.topic}"
        return None

    async def stop(self) -> None:
        self._closing = True
        for task in (self._probe_task, self._replace_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        async with self._send_lock:
            gen, self._current = self._current, None
        if gen is not None:
            await self._settle(gen)
        for leftover in list(self._leftovers):
            leftover.cancel()
        await asyncio.gather(*self._leftovers, return_exceptions=True)


#: The outcome of a record whose producer was given up on before it said anything about the record.
_ABANDONED = KafkaError("the producer was replaced before the broker acknowledged the record")


def _failed(exc: BaseException) -> asyncio.Future[object]:
    fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut


async def _at_once(results: list[BaseException | None]) -> list[BaseException | None]:
    return results


async def _stop_quietly(producer: Any) -> None:
    try:
        await asyncio.wait_for(producer.stop(), PROBE_TIMEOUT_S)
    except Exception as exc:
        log.warning("stopping a kafka producer that did not start: %r", exc)
