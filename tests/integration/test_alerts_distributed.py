"""Alert rules through Kafka + ``trackpipe worker`` (issue 14): the same scenario as the embedded test
(a threshold, a spike and an absence rule fire and resolve at the expected points, each transition
received once, signed with its rule's secret, and the Slack bodies), with the rules' inputs re-keyed by
project and evaluated by the worker; the transitions are on the stream topic too."""

from __future__ import annotations

import asyncio

import orjson

from tests.alerts_scenario import run_alerts_scenario
from tests.integration.test_outbound_distributed import _env, _prepare, pipeline
from tests.integration.test_outbound_embedded import Receiver
from tests.integration.test_stream_distributed import topic_messages
from tests.scenario import free_port


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
