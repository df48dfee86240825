"""The delivery loop: due deliveries from a store, one attempt each, the schedule's next state written back.

One loop for both modes (issue 13); only the store differs: the embedded state database
(:class:`trackpipe.outbound.sqlite_store.SqliteDueStore`) or, in a worker, the deliveries topic's
partitions held in memory (:mod:`trackpipe.outbound.kafka_queue`). Each attempt of a goal webhook is
signed at its own time with the goal's current key ring; an S2S postback is sent exactly as planned,
unsigned. A crash after an attempt and before its new state is written sends it again (at least once,
same id, same body). Observers (the delivery log, metrics) see every attempt after its state is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

from schemas.outbound.config import OutboundConfig
from schemas.outbound.signing import KeyRing, signed_headers
from sinks.outbound.planner import GoalOf
from sinks.outbound.schedule import Circuit, Delivery, DeliveryStatus, Rng, Schedule
from sinks.outbound.sender import AttemptResult, OutboundRequest, OutboundSender
from sinks.outbound.templates import FORM_CONTENT_TYPE
from trackpipe.outbound.endpoints import EndpointBook, endpoint_key

log = logging.getLogger(__name__)

POSTBACK_EVENT = "postback"  # the ``event`` of an S2S postback (goal webhooks: conversion.*)
ALERT_PREFIX = "alert."  # alert rules' deliveries: alert.firing, alert.resolved (signed), alert.slack
SLACK_EVENT = "alert.slack"


class Signer(Protocol):
    def key_ring(self) -> KeyRing | None: ...


#: ``rule_of(project, rule_id)``: the alert rule as configured now (its key ring signs its webhooks).
RuleOf = Callable[[str, str], Signer | None]


@dataclass(frozen=True, slots=True)
class DueRow:
    """A delivery as its store holds it: the exact request parts and where its schedule stands."""

    id: str
    project: str
    goal_id: str
    url: str
    body: bytes
    next_at: float | None
    status: str
    step: int
    attempts: int
    event: str = ""
    method: str = "POST"
    link_id: str = ""
    created_at: float = 0.0


class DueStore(Protocol):
    """Where deliveries and their schedule state live."""

    async def open(self) -> None: ...

    async def due(self, now: float, limit: int) -> list[DueRow]:
        """Deliveries due at ``now`` (pending or failed, ``next_at <= now``), oldest due first."""
        ...

    async def write(
        self, row: DueRow, new: Delivery, at: float, status: int | None, error: str | None, dead: str | None
    ) -> None:
        """Store ``row``'s state after an attempt made at ``at`` (durably, before returning)."""
        ...

    async def close(self) -> None: ...


class QueueStatsStore(Protocol):
    """Optional for a :class:`DueStore`: what the queue gauges show (computed by the loop, not a scrape)."""

    async def stats(self, now: float) -> tuple[int, float]:
        """(deliveries waiting: pending or failed, seconds the oldest due one is late; 0 if none)."""
        ...


class AttemptObserver(Protocol):
    def attempted(
        self,
        row: DueRow,
        new: Delivery,
        result: AttemptResult | None,
        at: datetime,
        dead_reason: str | None,
    ) -> None:
        """Called after an attempt's new state is stored (``result`` None: decided without an attempt)."""
        ...


class DeliveryLoop:
    """Sends due deliveries from ``store`` (see the module doc). One per store."""

    def __init__(
        self,
        store: DueStore,
        goal_of: GoalOf,
        sender: OutboundSender,
        schedule: Schedule,
        *,
        poll_s: float = 0.2,
        batch: int = 200,
        rng: Rng = random.random,
        clock: Callable[[], datetime] | None = None,
        observers: Sequence[AttemptObserver] = (),
        stats_every_s: float = 5.0,
        circuit: Circuit | None = None,
        tasks_per_host: int | None = None,
        endpoint_store: object | None = None,
        rule_of: RuleOf | None = None,
    ):
        self.store = store
        self.goal_of = goal_of
        self.rule_of: RuleOf = rule_of or (lambda project, rule_id: None)
        self.sender = sender
        self.schedule = schedule
        self.poll_s = poll_s
        self.batch = batch
        self.rng = rng
        self.clock = clock or (lambda: datetime.now(UTC))
        self.observers = list(observers)
        self.stats_every_s = stats_every_s
        #: (depth, oldest due age in seconds) as last computed from a store with ``stats``, for metrics
        self.queue_stats: tuple[int, float] | None = None
        self._stats_at = float("-inf")
        #: per endpoint (``goal:<id>`` / ``link:<id>``), the circuit's state (trackpipe/outbound/endpoints.py)
        self.endpoints = EndpointBook(circuit or Circuit(), endpoint_store or store)
        self.wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._per_host: dict[str, int] = {}  # attempts started and not finished, per destination host
        self._deferred: dict[str, float] = {}  # rows skipped until then (their host had enough tasks)
        # attempts started per host (waiting for its in-flight slots or running): 4x the sender's cap
        self.tasks_per_host = tasks_per_host or 4 * getattr(sender, "max_in_flight_per_host", 25)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle

    async def start(self) -> None:
        await self.store.open()
        await self.endpoints.load()
        self._task = asyncio.create_task(self.run(), name="outbound-delivery")

    async def close(self) -> None:
        self._stopping = True
        self.wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        await self.sender.close()
        await self.store.close()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self._take_due()
            except Exception:  # a busy or full database: the due rows stay, the next poll retries
                log.exception("outbound: reading due deliveries failed")
            await self._refresh_stats()
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.poll_s)

    async def _take_due(self) -> None:
        """Start an attempt for each due row not already taken. Rows in flight stay due in the store
        until their result is written, so the query asks for that many more; a host that already has
        ``tasks_per_host`` attempts waiting gets no more tasks now (its rows are skipped for a second),
        so one slow or dead receiver never keeps the others' rows out of the query."""
        now = self.clock().timestamp()
        self._deferred = {i: t for i, t in self._deferred.items() if t > now}
        limit = self.batch + len(self._in_flight) + len(self._deferred)
        for row in await self.store.due(now, limit):
            if row.id in self._in_flight or row.id in self._deferred:
                continue
            host = _host(row.url)
            if self._per_host.get(host, 0) >= self.tasks_per_host:
                self._deferred[row.id] = now + 1.0
                continue
            self._per_host[host] = self._per_host.get(host, 0) + 1
            self._in_flight[row.id] = asyncio.create_task(self._deliver(row, host))

    async def _refresh_stats(self) -> None:
        stats = getattr(self.store, "stats", None)
        now = self.clock().timestamp()
        if stats is None or now - self._stats_at < self.stats_every_s:
            return
        self._stats_at = now
        try:
            self.queue_stats = await stats(now)
        except Exception:
            log.warning("outbound: queue stats failed", exc_info=True)

    async def _deliver(self, row: DueRow, host: str) -> None:
        try:
            await self._attempt(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("outbound: delivery %s failed unexpectedly; it stays due", row.id)
            await asyncio.sleep(1.0)  # no hot loop on a persistent fault
        finally:
            self._in_flight.pop(row.id, None)
            left = self._per_host.get(host, 1) - 1
            if left > 0:
                self._per_host[host] = left
            else:
                self._per_host.pop(host, None)

    async def _attempt(self, row: DueRow) -> None:
        current = Delivery(DeliveryStatus(row.status), _dt(row.next_at), row.step, row.attempts)
        if self.endpoints.disabled(endpoint_key(row.event, row.goal_id, row.link_id)):
            now = self.clock()
            dead = self.schedule.endpoint_disabled(current)
            error = "the endpoint is disabled"
            await self.store.write(row, dead, now.timestamp(), None, error, "endpoint_disabled")
            self._observe(row, dead, None, now, "endpoint_disabled")
            return
        if row.event == POSTBACK_EVENT:  # sent exactly as planned, unsigned
            headers = {"Content-Type": FORM_CONTENT_TYPE} if row.method == "POST" else {}
            await self._send(row, current, OutboundRequest(row.method, row.url, headers, row.body))
            return
        if row.event == SLACK_EVENT:  # a Slack-compatible incoming webhook: its URL is its secret
            headers = {"Content-Type": "application/json"}
            await self._send(row, current, OutboundRequest("POST", row.url, headers, row.body))
            return
        now = self.clock()
        if row.event.startswith(ALERT_PREFIX):  # an alert rule's webhook: ``goal_id`` holds the rule id
            owner = self.rule_of(row.project, row.goal_id)
        else:
            owner = self.goal_of(row.project, row.goal_id)
        ring = owner.key_ring() if owner is not None else None
        if ring is None:  # the goal or rule was deleted (or has no key ring): nothing can sign it
            dead = Delivery(DeliveryStatus.DEAD, None, current.step, current.attempts)
            error = "goal or alert rule, or its signing key, is gone"
            await self.store.write(row, dead, now.timestamp(), None, error, "no_goal")
            self._observe(row, dead, None, now, "no_goal")
            return
        headers = {
            "Content-Type": "application/json",
            **signed_headers(row.id, int(now.timestamp()), row.body, ring.signing_secrets(now)),
        }
        await self._send(row, current, OutboundRequest("POST", row.url, headers, row.body))

    async def _send(self, row: DueRow, current: Delivery, request: OutboundRequest) -> None:
        result = await self.sender.attempt(request)
        after = self.clock()
        new, dead_reason = self._next(current, result, after)
        error = result.error or (None if result.reason is None else result.reason.value)
        await self.store.write(row, new, after.timestamp(), result.status, error, dead_reason)
        self._observe(row, new, result, after, dead_reason)
        key = endpoint_key(row.event, row.goal_id, row.link_id)
        await self.endpoints.after_attempt(key, new, result, after)
        if new.status is not DeliveryStatus.DELIVERED:
            log.info(
                "outbound: delivery %s attempt %d: %s (%s)",
                row.id,
                new.attempts,
                new.status.value,
                error,
            )

    def _observe(
        self, row: DueRow, new: Delivery, result: AttemptResult | None, at: datetime, dead: str | None
    ) -> None:
        for observer in self.observers:
            try:
                observer.attempted(row, new, result, at, dead)
            except Exception:  # an observer never stops deliveries
                log.exception("outbound: observer %r failed", observer)

    def _next(self, current: Delivery, result: AttemptResult, now: datetime) -> tuple[Delivery, str | None]:
        if result.refused is not None and not result.refusal_retriable:  # the URL itself is refused
            dead = Delivery(
                DeliveryStatus.DEAD, None, current.step + 1, current.attempts + 1, result.reason, None
            )
            return dead, "refused"
        new = self.schedule.after_attempt(current, result.classified, now, self.rng)
        return new, None if new.dead_reason is None else new.dead_reason.value


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def sender_for(config: OutboundConfig) -> OutboundSender:
    """The HTTP sender with the settings' allow-list, timeout and per-host limits."""
    return OutboundSender(
        config.allow_list,
        timeout_s=config.timeout_s,
        max_in_flight_per_host=config.max_in_flight_per_host,
        rate_per_host=config.rate_per_host,
    )


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)
