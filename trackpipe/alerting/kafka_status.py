"""The rules' live states in the distributed mode: the compacted ``<events>.alert-status`` (one partition,
key = rule id, value = its :class:`~schemas.alerts.AlertStatus` as JSON).

The evaluator owning a rule's project publishes the rule's status after each batch in which the rule
had transitions (after the notifications, before the snapshots: a replay republishes the same ids, which
:func:`processors.alerts.status.status_after` lists once). The edges read the topic for the admin API
and the dashboard (:class:`KafkaAlertStates`), so every edge shows what the workers evaluate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas.alerts import AlertState, AlertStatus
from trackpipe.outbound.kafka_read import read_partition

log = logging.getLogger(__name__)


def encode_status(status: AlertStatus) -> bytes:
    return status.model_dump_json().encode()


def decode_status(value: bytes | None) -> AlertStatus | None:
    if value is None:
        return None
    try:
        return AlertStatus.model_validate_json(value)
    except ValidationError as exc:
        log.warning("alerts: unreadable rule status skipped: %s", exc)
        return None


async def read_statuses(consumer: AIOKafkaConsumer, topic: str) -> dict[str, AlertStatus]:
    """Every rule's latest status (the topic from its start to its end offset now)."""
    found: dict[str, AlertStatus] = {}

    def apply(key: bytes, value: bytes | None) -> None:
        status = decode_status(value)
        if status is None:
            found.pop(key.decode(), None)
        else:
            found[key.decode()] = status

    await read_partition(consumer, TopicPartition(topic, 0), apply)
    return found


class KafkaAlertStates:
    """:class:`~schemas.alerts.AlertStates` of a distributed edge: what the workers last published. A rule
    without transitions yet is ``normal`` with none listed.

    One consumer for the edge's life: the first request reads the topic from its start, each later one
    reads on from where the last stopped up to the end offset at that moment (one offsets request when
    nothing changed), so an answer is as fresh as a read of the whole topic without a new client per
    request. A broker that cannot be reached gives ``{}`` (statuses unknown) and a fresh start next time.
    """

    def __init__(self, bootstrap: str, topic: str, *, security: dict[str, object] | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.security = security or {}
        self._consumer: AIOKafkaConsumer | None = None
        self._found: dict[str, AlertStatus] = {}
        self._next = 0  # the offset to read on from
        self._lock = asyncio.Lock()

    def _apply(self, key: bytes, value: bytes | None) -> None:
        status = decode_status(value)
        if status is None:
            self._found.pop(key.decode(), None)
        else:
            self._found[key.decode()] = status

    async def status(self, rule_ids: Sequence[str]) -> dict[str, AlertStatus]:
        async with self._lock:
            try:
                if self._consumer is None:
                    consumer = AIOKafkaConsumer(
                        bootstrap_servers=self.bootstrap, enable_auto_commit=False, **self.security
                    )
                    self._consumer, self._found, self._next = consumer, {}, 0
                    await consumer.start()
                tp = TopicPartition(self.topic, 0)
                self._next = await read_partition(self._consumer, tp, self._apply, start=self._next)
            except (KafkaError, OSError) as exc:  # the rules are still listed, their status unknown (null)
                log.warning("alerts: rule statuses not read (%s)", exc)
                await self.close()
                return {}
            found = dict(self._found)
        return {rid: found.get(rid) or AlertStatus(state=AlertState.NORMAL) for rid in rule_ids}

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()
