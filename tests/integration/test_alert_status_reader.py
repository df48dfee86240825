"""The distributed edge's view of the rules' live states (``KafkaAlertStates``) on a real broker: one
consumer for the edge's life that reads on from where it stopped, tombstones, and a broker that cannot
be reached (statuses unknown, then a fresh start)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from schemas.alerts import AlertState, AlertStatus
from tests.scenario import create_topics
from trackpipe.alerting.kafka_status import KafkaAlertStates, encode_status

FIRING = AlertStatus(state=AlertState.FIRING, episode_started_at=datetime(2026, 12, 5, 6, 0, tzinfo=UTC))
PENDING = AlertStatus(state=AlertState.PENDING, episode_started_at=datetime(2026, 12, 5, 6, 1, tzinfo=UTC))


async def _produce(bootstrap: str, topic: str, records: list[tuple[str, AlertStatus | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, status in records:
            value = None if status is None else encode_status(status)
            await producer.send_and_wait(topic, value, key.encode(), partition=0)
    finally:
        await producer.stop()


async def test_reads_on_from_where_it_stopped_with_one_consumer(kafka_bootstrap: str, unique_name) -> None:
    topic = unique_name("alert-status")
    await create_topics(kafka_bootstrap, [topic], 1)
    states = KafkaAlertStates(kafka_bootstrap, topic)
    try:
        # an empty topic: every rule is normal, none listed
        assert await states.status(["r1", "r2"]) == {"r1": AlertStatus(state=AlertState.NORMAL),
                                                     "r2": AlertStatus(state=AlertState.NORMAL)}  # fmt: skip
        consumer = states._consumer
        await _produce(kafka_bootstrap, topic, [("r1", PENDING), ("r1", FIRING), ("r2", PENDING)])
        assert await states.status(["r1", "r2"]) == {"r1": FIRING, "r2": PENDING}
        # a tombstone forgets the rule; the same consumer read on (no new client per request)
        await _produce(kafka_bootstrap, topic, [("r2", None)])
        assert await states.status(["r1", "r2"]) == {"r1": FIRING, "r2": AlertStatus(state=AlertState.NORMAL)}
        assert states._consumer is consumer and consumer is not None
        # a new reader sees the same from the start
        fresh = KafkaAlertStates(kafka_bootstrap, topic)
        try:
            assert await fresh.status(["r1", "r2", "r3"]) == await states.status(["r1", "r2", "r3"])
        finally:
            await fresh.close()
    finally:
        await states.close()


async def test_an_unreachable_broker_gives_unknown_statuses(unique_name) -> None:
    states = KafkaAlertStates("127.0.0.1:1", unique_name("alert-status"))
    try:
        assert await states.status(["r1"]) == {}
        assert states._consumer is None  # started afresh by the next request
    finally:
        await states.close()
