"""The public conversion stream through Kafka + ``trackpipe worker`` (issue 14): the stream topic
carries one CloudEvent per change, keyed by project and valid against the JSON Schema; the distributed
edge serves it as Server-Sent Events resumable with Last-Event-ID; the example consumer in
``examples/`` reads it and prints every change."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.partitioning import partition_for
from tests.integration.test_outbound_distributed import _env, _prepare
from tests.integration.test_stream_embedded import BEARER, SCHEMA, check_messages, make_goal, stream_scenario
from tests.scenario import Proc, free_port
from tests.stream_client import SseEvent, read_events

ROOT = Path(__file__).resolve().parents[2]


async def topic_messages(bootstrap: str, topic: str, partitions: int) -> list[tuple[bytes, bytes, int]]:
    """Every record of the stream topic now: (key, value, partition)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        out: list[tuple[bytes, bytes, int]] = []
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for r in records:
                    out.append((r.key or b"", r.value or b"", tp.partition))
                    if r.offset + 1 >= ends[tp]:
                        left.discard(tp)
        return out
    finally:
        await consumer.stop()


def test_stream_topic_sse_and_the_example_consumer(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = _env(kafka_bootstrap, clickhouse_server, ch_database, unique_name)
    _prepare(env, tmp_path)
    topic = env["TRACKPIPE_KAFKA_TOPIC"] + ".stream"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc(["edge", "--port", str(port)], env, tmp_path / "edge.log")
    worker = Proc(["worker"], env, tmp_path / "worker.log")
    stop = threading.Event()
    try:
        edge.wait_healthy(base)
        goal = make_goal(base, "Streamed")
        project = goal["project"]
        url = f"{base}/api/v1/stream?project={project}"
        live: list[SseEvent] = []
        failed: list[BaseException] = []

        def follow() -> None:
            try:
                read_events(url + "&from=earliest", BEARER, 9, 180, live, stop)
            except BaseException as exc:  # reported below
                failed.append(exc)

        follower = threading.Thread(target=follow)
        follower.start()

        def seen() -> list[SseEvent]:
            if failed:
                raise AssertionError(f"the follower failed: {failed[0]!r}")
            return live

        expected = stream_scenario(base, goal, seen, timeout=120)
        follower.join(60)
        assert not failed, failed
        check_messages(live, expected)

        # resume after the fourth message: the rest, nothing twice, nothing skipped
        tail = read_events(url, {**BEARER, "Last-Event-ID": live[3].id}, 5, timeout=60)
        assert [e.id for e in tail] == [e.id for e in live[4:]]
        assert all(e.id.startswith(f"{partition_for(project, 3)}-") for e in live)

        # the topic itself: keyed by project, in the project's partition, every message valid
        records = asyncio.run(topic_messages(kafka_bootstrap, topic, 3))
        mine = [orjson.loads(v) for k, v, part in records if k == project.encode()]
        assert {part for k, _, part in records if k == project.encode()} == {partition_for(project, 3)}
        assert [m["id"] for m in mine] == [e.data["id"] for e in live]
        for m in mine:
            SCHEMA.validate(m["data"])

        # the example consumer prints one line per change, in order
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "stream_consumer.py"),
                "--bootstrap",
                kafka_bootstrap,
                "--topic",
                topic,
                "--project",
                project,
                "--from-beginning",
                "--idle-exit",
                "5",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.splitlines()
        assert len(out) == len(expected)
        for line, event in zip(out, live, strict=True):
            data = event.data["data"]
            change = event.event.rsplit(".", 1)[1]
            assert f" {project} {change:<8} {data['conversion_id']} " in line, (line, event)
            assert f"order={data['order_id']} " in line
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- edge ---\n{edge.tail()}\n--- worker ---\n{worker.tail()}") from None
    finally:
        stop.set()
        edge.stop()
        worker.stop()
