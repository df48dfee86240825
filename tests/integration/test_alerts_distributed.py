"""Alert rules through Kafka + ``trackpipe worker`` (issue 14): the same scenario as the embedded test
(a threshold, a spike and an absence rule fire and resolve at the expected points, each transition
received once, signed with its rule's secret, and the Slack bodies), with the rules' inputs re-keyed by
project and evaluated by the worker; the transitions are on the stream topic too."""

from __future__ import annotations

import asyncio
import signal

import orjson

from tests.alerts_scenario import (
    ALERT_PATH,
    alert_hooks,
    check_rule_statuses,
    fire_one_episode,
    run_alerts_scenario,
)
from tests.integration.test_outbound_admin import _list
from tests.integration.test_outbound_distributed import _env, _prepare, pipeline
from tests.integration.test_outbound_embedded import Receiver, wait_for
from tests.integration.test_stream_distributed import topic_messages
from tests.scenario import Proc, free_port


def test_threshold_spike_and_absence_rules_through_kafka_and_a_worker(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = _env(kafka_bootstrap, clickhouse_server, ch_database, unique_name)
    _prepare(env, tmp_path)
    receiver = Receiver(free_port())
    receiver.up()
    with pipeline(tmp_path, env, receiver) as base:
        done = run_alerts_scenario(base, receiver, timeout=120)
        records = asyncio.run(topic_messages(kafka_bootstrap, env["TRACKPIPE_KAFKA_TOPIC"] + ".stream", 3))
        alerts = [orjson.loads(v) for _, v, _ in records if b'"com.trackpipe.alert.' in v]
        assert sorted({a["id"] for a in alerts}) == sorted(h["transition_id"] for h in done["hooks"])
        # the edge shows the states the worker published on <events>.alert-status
        check_rule_statuses(base, done)


def test_sigkill_of_a_worker_mid_episode_repeats_nothing_and_loses_nothing(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = _env(kafka_bootstrap, clickhouse_server, ch_database, unique_name)
    _prepare(env, tmp_path)
    receiver = Receiver(free_port())
    receiver.up()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc(["edge", "--port", str(port)], env, tmp_path / "edge.log")
    first = Proc(["worker"], env, tmp_path / "worker1.log")
    second: Proc | None = None
    try:
        edge.wait_healthy(base)
        secrets, firing = fire_one_episode(base, receiver)
        # its delivery recorded as delivered (the delivery log): the kill comes mid-episode
        wait_for(
            "the firing delivery recorded",
            lambda: [d for d in _list(base, status="delivered") if d["id"] == firing["transition_id"]],
        )
        first.stop(signal.SIGKILL)
        second = Proc(["worker"], env, tmp_path / "worker2.log")
        hooks = wait_for(
            "resolved by the second worker", lambda: (h := alert_hooks(receiver, secrets))[1:] and h, 120
        )
        assert [h["state"] for h in hooks] == ["firing", "resolved"]
        assert hooks[1]["episode_id"] == hooks[0]["episode_id"]  # the same episode, resumed from its snapshot
        assert len(receiver.on(ALERT_PATH)) == 2  # nothing repeated
    except AssertionError as exc:
        logs = f"--- worker 1 ---\n{first.tail()}\n--- worker 2 ---\n{second.tail() if second else ''}"
        raise AssertionError(f"{exc}\n--- edge ---\n{edge.tail()}\n{logs}") from None
    finally:
        edge.stop()
        first.stop()
        if second is not None:
            second.stop()
        receiver.close()
