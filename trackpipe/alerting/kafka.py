"""Alert rules in the distributed mode (issue 14): inputs re-keyed by project, one evaluator per project.

A project's rules need all of its traffic and conversions in one place, and neither input is keyed by
project. So, in every worker:

- :class:`TrafficForwarder` (group ``<app>-alert-traffic``) reads the events topic and forwards the
  events of projects that have enabled rules to ``<events>.alert-input``, keyed and partitioned by
  project; without any rule it reads nothing. The outbound planner forwards the conversion rows of
  those projects the same way (:func:`forward_records`).
- :class:`AlertEvaluator` (group ``<app>-alerts``) reads ``<events>.alert-input``. A partition's project
  snapshots live in the compacted ``<events>.alert-state`` at the same partition, read when it is
  assigned. Per batch: observe, advance, then produce the notifications (``p/`` records to the
  deliveries topic: the rule's webhook, signed at send time with the rule's key ring, and the Slack
  body) and the stream messages, then the changed snapshots, then commit the offsets, each step
  acknowledged before the next. A timer advances idle projects every second the same way.

At least once: a crash replays the input since the last commit from the last snapshot; conversions are
counted once (the engine's ledger), a replayed traffic batch counts twice, and transition ids are
stable (rule, episode start, state), so a replayed notification has the id of the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from processors.alerts.engine import AlertEngine
from processors.alerts.notify import cloudevent, slack_body, stream_type, webhook_body
from processors.alerts.status import status_after
from processors.runtime.faust.topology import TopologyNames
from schemas.alerts import AlertRule, AlertState, AlertStatus, AlertTransition
from schemas.events import Event
from schemas.partitioning import partition_for
from schemas.rows import Conversion
from sinks.outbound.queue import QueuedDelivery, RecordKind, encode_delivery, record_key
from trackpipe.alerting.embedded import ALERT_EVENTS, slack_id
from trackpipe.alerting.kafka_status import encode_status, read_statuses
from trackpipe.kafka_group import KafkaGroupService
from trackpipe.outbound.kafka_read import read_partition
from trackpipe.outbound.loop import SLACK_EVENT

log = logging.getLogger(__name__)

TICK_S = 1.0


def input_record(kind: str, items: Sequence[bytes]) -> bytes:
    return b'{"kind":"%s","items":[' % kind.encode() + b",".join(items) + b"]}"


async def forward_records(
    producer: AIOKafkaProducer, topic: str, partitions: int, kind: str, by_project: dict[str, list[bytes]]
) -> list[Any]:
    """Send each project's items as one record keyed by the project; returns the delivery futures."""
    return [
        await producer.send(
            topic, input_record(kind, items), project.encode(), partition=partition_for(project, partitions)
        )
        for project, items in by_project.items()
        if items
    ]


class TrafficForwarder:
    def __init__(
        self,
        bootstrap: str,
        names: TopologyNames,
        partitions: int,
        group_id: str,
        projects: Callable[[], set[str]],
        *,
        security: dict[str, object] | None = None,
    ):
        self.bootstrap, self.names, self.partitions, self.group_id = bootstrap, names, partitions, group_id
        self.projects = projects
        self.security = security or {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alert-traffic")

    async def _run(self) -> None:
        while True:  # nothing to do (and nothing read) until a rule exists: config changes are polled
            if self.projects():
                break
            await asyncio.sleep(1.0)
        common: dict[str, Any] = {"bootstrap_servers": self.bootstrap, **self.security}
        producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **common)
        consumer = AIOKafkaConsumer(
            self.names.events_in,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",  # rules count traffic from when they exist
            **common,
        )
        await producer.start()
        await consumer.start()
        try:
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    wanted = self.projects()
                    by_project: dict[str, list[bytes]] = {}
                    for records in batches.values():
                        for r in records:
                            for e in _events(r.value):
                                project = e.get("project_id")
                                if project in wanted:
                                    by_project.setdefault(project, []).append(orjson.dumps(e))
                    for fut in await forward_records(
                        producer, self.names.alert_input, self.partitions, "events", by_project
                    ):
                        await fut
                    if batches:
                        await consumer.commit()
                except asyncio.CancelledError:
                    raise
                except (KafkaError, OSError) as exc:
                    log.warning("alerts: forwarding traffic failed (%s); retrying", exc)
                    await asyncio.sleep(1.0)
        finally:
            await consumer.stop()
            await producer.stop()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _events(value: bytes | None) -> list[dict[str, Any]]:
    try:
        found = orjson.loads(value or b"{}").get("events", [])
    except (orjson.JSONDecodeError, AttributeError):
        return []
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


class _Listener(ConsumerRebalanceListener):
    def __init__(self, evaluator: AlertEvaluator):
        self.evaluator = evaluator

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.evaluator.owned -= {tp.partition for tp in revoked}
        self.evaluator.reset()

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.evaluator.owned |= {tp.partition for tp in assigned}
        await self.evaluator.load()


class AlertEvaluator(KafkaGroupService):
    def __init__(
        self,
        bootstrap: str,
        names: TopologyNames,
        partitions: int,
        group_id: str,
        rules: Callable[[], list[AlertRule]],
        stream_topic: str,
        *,
        security: dict[str, object] | None = None,
    ):
        super().__init__(bootstrap, group_id, security)
        self.names, self.partitions = names, partitions
        self.rules = rules
        self.stream_topic = stream_topic
        self.owned: set[int] = set()
        self.engine = AlertEngine()
        self._rules_seen: tuple[AlertRule, ...] | None = None
        self._lock = asyncio.Lock()
        self._status: dict[str, AlertStatus] = {}  # published rule statuses (<events>.alert-status)

    def _mine(self) -> tuple[AlertRule, ...]:
        return tuple(
            sorted(
                (r for r in self.rules() if partition_for(r.project, self.partitions) in self.owned),
                key=lambda r: r.id,
            )
        )

    def _refresh(self) -> None:
        mine = self._mine()
        if mine != self._rules_seen:
            self.engine.set_rules(mine)
            self._rules_seen = mine

    def reset(self) -> None:
        self.engine = AlertEngine()
        self._rules_seen = None

    async def load(self) -> None:
        """Rules of the owned partitions, then their snapshots."""
        assert self._reader is not None
        self.reset()
        self._refresh()
        for part in sorted(self.owned):
            found: dict[str, bytes] = {}

            def apply(key: bytes, value: bytes | None, found: dict[str, bytes] = found) -> None:
                if value is None:
                    found.pop(key.decode(), None)
                else:
                    found[key.decode()] = value

            await read_partition(self._reader, TopicPartition(self.names.alert_state, part), apply)
            for project, snapshot in found.items():
                try:
                    self.engine.restore(project, snapshot)
                except ValueError as exc:  # a snapshot of another format: start that project afresh
                    log.warning("alerts: snapshot of %s not restored: %s", project, exc)
        self.engine.clear_dirty()
        self._status = await read_statuses(self._reader, self.names.alert_status)

    async def start(self) -> None:
        await self._start_group(
            self.names.alert_input, _Listener(self), self._run, name="alert-evaluator", reader=True
        )

    async def _run(self) -> None:
        assert self._consumer is not None
        last_tick = 0.0
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=int(TICK_S * 1000), max_records=1000)
                async with self._lock:
                    self._refresh()
                    events: list[Event] = []
                    conversions: list[Conversion] = []
                    for records in batches.values():
                        for r in records:
                            _decode(r.value, events, conversions)
                    self.engine.observe(events, conversions)
                    if batches or time.monotonic() - last_tick >= TICK_S:
                        last_tick = time.monotonic()
                        await self._emit(self.engine.advance(int(time.time() * 1000)))
                    if batches:
                        await self._consumer.commit(
                            {tp: rs[-1].offset + 1 for tp, rs in batches.items() if rs}
                        )
            except asyncio.CancelledError:
                raise
            except CommitFailedError as exc:  # a rebalance: the new owner replays from the last commit
                log.warning("alerts: commit failed (%s)", exc)
            except (KafkaError, OSError) as exc:
                log.warning("alerts: evaluation failed (%s); reloading the committed state", exc)
                await asyncio.sleep(1.0)
                with contextlib.suppress(KafkaError, OSError):
                    await self.load()
                    for tp in self._consumer.assignment():
                        committed = await self._consumer.committed(tp)
                        self._consumer.seek(tp, committed or 0)

    async def _emit(self, transitions: list[AlertTransition]) -> None:
        """Notifications and stream messages, then the snapshots (each acknowledged before the next)."""
        assert self._producer is not None
        rules = {r.id: r for r in self._rules_seen or ()}
        now = datetime.now(UTC).timestamp()
        sent = []
        for t in transitions:
            rule = rules.get(t.rule_id)
            if rule is None or not t.notify or t.to_state not in ALERT_EVENTS:
                continue
            for d in _deliveries(t, rule, now):
                sent.append(
                    await self._producer.send(
                        self.names.deliveries,
                        encode_delivery(d),
                        record_key(RecordKind.PLANNED, d.id),
                        partition=partition_for(d.id, self.partitions),
                    )
                )
            sent.append(
                await self._producer.send(
                    self.stream_topic,
                    cloudevent(t, rule),
                    t.project.encode(),
                    partition=partition_for(t.project, self.partitions),
                    headers=[("ce_type", stream_type(t).value.encode()), ("ce_id", t.id.encode())],
                )
            )
        statuses = self._statuses(transitions, rules)
        for rule_id, status in statuses.items():
            sent.append(
                await self._producer.send(
                    self.names.alert_status, encode_status(status), rule_id.encode(), partition=0
                )
            )
        for fut in sent:
            await fut
        self._status.update(statuses)
        sent = [
            await self._producer.send(
                self.names.alert_state,
                self.engine.snapshot(project),
                project.encode(),
                partition=partition_for(project, self.partitions),
            )
            for project in self.engine.dirty()
        ]
        for fut in sent:
            await fut
        self.engine.clear_dirty()
        for t in transitions:
            log.info("alert %s (%s): %s -> %s at %s", t.rule_id, t.project, t.from_state, t.to_state, t.at)

    def _statuses(
        self, transitions: list[AlertTransition], rules: dict[str, AlertRule]
    ) -> dict[str, AlertStatus]:
        """The new published status of each rule with transitions in this batch."""
        by_rule: dict[str, list[AlertTransition]] = {}
        for t in transitions:
            if t.rule_id in rules:
                by_rule.setdefault(t.rule_id, []).append(t)
        out = {}
        for rule_id, ts in by_rule.items():
            st = self.engine.rule_state(rules[rule_id])
            out[rule_id] = status_after(
                self._status.get(rule_id),
                ts,
                AlertState.NORMAL if st is None else st.state,
                None if st is None else st.episode_ms,
            )
        return out


def _deliveries(t: AlertTransition, rule: AlertRule, now: float) -> list[QueuedDelivery]:
    out = []
    if rule.channels.webhook_url:
        out.append(
            QueuedDelivery(t.id, t.project, rule.id, ALERT_EVENTS[t.to_state], "POST",
                           str(rule.channels.webhook_url), webhook_body(t, rule), now, now)
        )  # fmt: skip
    if rule.channels.slack_url:
        out.append(
            QueuedDelivery(slack_id(t.id), t.project, rule.id, SLACK_EVENT, "POST",
                           str(rule.channels.slack_url), slack_body(t, rule), now, now)
        )  # fmt: skip
    return out


def _decode(value: bytes | None, events: list[Event], conversions: list[Conversion]) -> None:
    try:
        record = orjson.loads(value or b"{}")
        kind, items = record.get("kind"), record.get("items", [])
        for item in items:
            if kind == "events":
                events.append(Event.model_validate(item))
            elif kind == "conversions":
                conversions.append(Conversion.model_validate(item))
    except (orjson.JSONDecodeError, AttributeError, ValidationError) as exc:
        log.warning("alerts: input record skipped: %s", exc)


__all__ = ["AlertEvaluator", "AlertState", "TrafficForwarder", "forward_records"]
