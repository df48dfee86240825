"""Kafka security end to end (issue 15): ``trackpipe topics create``, ``trackpipe edge`` and ``trackpipe
worker`` against the secured test broker (``secure_kafka``: a throwaway CA, certificates and a random
SCRAM-SHA-512 password made for the run), over TLS with a client certificate (mTLS) and over SASL_SSL.

The processes know only the secured listener's address, so everything they do (topics, the edge's
records and configuration topic, every Faust client of the worker, its outbound and alert clients) goes
through TLS / SCRAM. The records are read back by the test's own TLS client, built apart from the
settings under test. A wrong password and a client without the CA are refused, clearly.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context

from schemas.envelope import decode_envelope
from tests.integration.test_edge_convert import REF_JSON
from tests.scenario import EXPECTED_ROWS, LEGACY_TX, Proc, cli, free_port, http, run_cli, wait_report
from trackpipe.devservers.kafka import SCRAM_MECHANISM, BrokerTls, KafkaBroker, client_settings

pytestmark = pytest.mark.integration

PARTITIONS = 2


def _tls(broker: KafkaBroker) -> BrokerTls:
    assert broker.tls is not None
    return broker.tls


def security_env(broker: KafkaBroker, listener: str, password: str | None = None) -> dict[str, str]:
    """TRACKPIPE_* variables of a client of ``listener``: SSL with a client certificate whose key is
    encrypted (mTLS), or SASL_SSL with the SCRAM user (``password`` replaces its password)."""
    env = client_settings(broker, listener)
    assert "TRACKPIPE_KAFKA_SSL_CAFILE" in env
    if password is not None:
        env["TRACKPIPE_KAFKA_SASL_PASSWORD"] = password
    return env


def client_options(
    broker: KafkaBroker, listener: str, *, ca: bool = True, cert: bool = True
) -> dict[str, Any]:
    """aiokafka options of the test's own client of ``listener`` (``ca=False``: the system trust store
    only; ``cert=False``: no client certificate)."""
    tls = _tls(broker)
    context = create_ssl_context(
        cafile=tls.ca_file if ca else None,
        certfile=tls.client_cert_file if cert and listener == "SSL" else None,
        keyfile=tls.client_key_file if cert and listener == "SSL" else None,
        password=tls.client_key_password if cert and listener == "SSL" else None,
    )
    options: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap_for(listener),
        "security_protocol": listener,
        "ssl_context": context,
        "request_timeout_ms": 10_000,
    }
    if listener == "SASL_SSL":
        options.update(
            sasl_mechanism=SCRAM_MECHANISM,
            sasl_plain_username=broker.scram_username,
            sasl_plain_password=broker.scram_password,
        )
    return options


async def read_event_ids(options: dict[str, Any], topic: str, want: set[str], within_s: float) -> set[str]:
    """Event ids of the envelope records on ``topic`` once ``want`` are all there (or at the deadline)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **options)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen: set[str] = set()
        deadline = time.monotonic() + within_s
        while not want <= seen and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    seen.update(e.event_id for e in decode_envelope(record.value))
        return seen
    finally:
        await consumer.stop()


async def can_list_topics(options: dict[str, Any]) -> bool:
    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
    except KafkaConnectionError:
        return False
    try:
        await admin.list_topics()
        return True
    finally:
        await admin.close()


def send_events(base: str) -> set[str]:
    """The reference events (JSON /track, and the legacy transaction twice): their event ids."""
    ids: set[str] = set()
    for method, path, body in [
        ("POST", "/track", json.dumps(REF_JSON).encode()),
        ("GET", LEGACY_TX, None),
        ("GET", LEGACY_TX, None),
    ]:
        headers = {"Content-Type": "application/json"} if body else {}
        status, answer = http(method, base + path, body, headers)
        assert status == 200, (path, status, answer)
        ids.update(answer["event_ids"])
    return ids


@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL"])
def test_topics_edge_and_worker_over_a_secured_listener(
    listener, tmp_path, secure_kafka, clickhouse_server, ch_database, unique_name
):
    topic = unique_name("events")
    env = {
        **security_env(secure_kafka, listener),
        "TRACKPIPE_KAFKA_TOPIC": topic,
        "TRACKPIPE_PARTITIONS": str(PARTITIONS),
        "TRACKPIPE_CLICKHOUSE_HOST": clickhouse_server.host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(clickhouse_server.http_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": ch_database,
        "TRACKPIPE_WORKER_APP_ID": unique_name("worker"),
        "TRACKPIPE_WORKER_BATCH_WITHIN_S": "0.2",
        "TRACKPIPE_WORKER_METRICS_PORT": "0",
    }
    assert "created" in run_cli(["topics", "create"], env, tmp_path)
    run_cli(["migrate"], env, tmp_path)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc(["edge", "--port", str(port)], env, tmp_path / "edge.log")
    worker = Proc(["worker"], env, tmp_path / "worker.log")
    try:
        edge.wait_healthy(base)
        ids = send_events(base)
        assert len(ids) == len(REF_JSON["ev"]) + 2
        # the records are on the topic: read back over the same listener by a client of the test's own
        seen = asyncio.run(read_event_ids(client_options(secure_kafka, listener), topic, ids, 30))
        assert ids <= seen, f"missing on {topic}: {ids - seen}"
        # ... and the worker (Faust over TLS / SCRAM) processed them into ClickHouse
        wait_report(base, "12345", EXPECTED_ROWS, timeout=90)
        # the operator's commands over the same listener: the layout, the worker's group and its lag
        status = cli(["ops", "status", "--json"], env, tmp_path)
        report = json.loads(status.stdout)
        assert report["layout"]["current"] == {"generation": 0, "partitions": PARTITIONS}, status.stderr
        assert [p for p in report["problems"] if p["severity"] == "error"] == []
        group = next(g for g in report["groups"] if g["group_id"] == env["TRACKPIPE_WORKER_APP_ID"])
        assert group["members"] and any(p["topic"] == topic for p in group["partitions"])
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- edge ---\n{edge.tail()}\n--- worker ---\n{worker.tail()}") from None
    finally:
        edge.stop()
        worker.stop()


def test_a_wrong_scram_password_is_refused_clearly(tmp_path, secure_kafka, unique_name):
    assert secure_kafka.scram_password is not None
    wrong = "not-" + secure_kafka.scram_password
    env = {
        **security_env(secure_kafka, "SASL_SSL", password=wrong),
        "TRACKPIPE_KAFKA_TOPIC": unique_name("events"),
        "TRACKPIPE_WORKER_METRICS_PORT": "0",
    }
    t0 = time.monotonic()
    out = cli(["topics", "create"], env, tmp_path)
    assert time.monotonic() - t0 < 30  # refused at once, no retry loop
    assert out.returncode == 1, out
    assert "SaslAuthenticationFailed" in out.stderr, out.stderr
    assert f"cannot connect to Kafka at {secure_kafka.bootstrap_for('SASL_SSL')}" in out.stderr
    assert "TRACKPIPE_KAFKA_SASL_USERNAME, _PASSWORD" in out.stderr  # names what to check
    assert "Traceback" not in out.stderr + out.stdout
    assert wrong not in out.stderr + out.stdout

    # the same credentials are good for nothing else: the edge never reports healthy and stops
    port = free_port()
    edge = Proc(["edge", "--port", str(port)], env, tmp_path / "edge.log")
    try:
        deadline = time.monotonic() + 60
        while edge.p.poll() is None:
            assert time.monotonic() < deadline, f"edge neither healthy nor stopped:\n{edge.tail()}"
            try:
                status = http("GET", f"http://127.0.0.1:{port}/healthz", timeout=2)[0]
            except OSError:
                status = None  # not listening (yet)
            assert status != 200, edge.tail()
            time.sleep(0.1)
    finally:
        code = edge.stop()
    log = edge.tail(20_000)
    assert code == 1, log
    assert "SaslAuthenticationFailed" in log and "Traceback" not in log, log

    worker = cli(["worker"], env, tmp_path)
    assert worker.returncode == 1, worker
    assert "SaslAuthenticationFailed" in worker.stderr and "Traceback" not in worker.stderr


@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL"])
def test_the_tls_check_is_real(listener, tmp_path, secure_kafka, unique_name):
    """Without the CA the broker's certificate is not trusted (SSL listener: nor without a client
    certificate); with both the same client gets through, so the refusals are the TLS checks."""
    assert asyncio.run(can_list_topics(client_options(secure_kafka, listener)))
    assert not asyncio.run(can_list_topics(client_options(secure_kafka, listener, ca=False)))
    if listener == "SSL":
        assert not asyncio.run(can_list_topics(client_options(secure_kafka, listener, cert=False)))

    env = {**security_env(secure_kafka, listener), "TRACKPIPE_KAFKA_TOPIC": unique_name("events")}
    del env["TRACKPIPE_KAFKA_SSL_CAFILE"]  # trackpipe with the system trust store only
    out = cli(["topics", "create"], env, tmp_path)
    assert out.returncode == 1, out
    assert "CERTIFICATE_VERIFY_FAILED" in out.stderr and "TRACKPIPE_KAFKA_SSL_CAFILE" in out.stderr, (
        out.stderr
    )
    assert "Traceback" not in out.stderr
