"""pytest plugin: a real Apache Kafka broker for the test session.

``kafka_bootstrap`` (session) is ``"host:port"`` of either an external broker named by
``TRACKPIPE_TEST_KAFKA=host:port`` or a single-node KRaft broker started from the jars in
``.cache/kafka/libs`` (fetched with Maven on first use) and stopped when the session ends.
If the broker cannot be had the tests that need it fail with the reason; they never skip.

``unique_name`` (function) is a factory of unique topic / group / app names, so tests
sharing the one broker never see each other's data.

``dedicated_broker`` (function) is a broker of the test's own, for tests that stop and restart it,
which the shared one must never be.

``secure_kafka`` (session) is a second local broker, started only for the tests that ask for it, with
an ``SSL`` listener (TLS, client certificate required) and a ``SASL_SSL`` one (SCRAM-SHA-512) beside
PLAINTEXT: a throwaway CA, certificates and a random SCRAM password made for the run (``broker.tls``,
``broker.scram_username`` / ``scram_password``, ``broker.bootstrap_for("SSL")``). It is always started
here: ``TRACKPIPE_TEST_KAFKA`` names no secured broker.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from trackpipe.devservers.kafka import KafkaBroker, KafkaError, ensure_kafka_jars

ENV_EXTERNAL = "TRACKPIPE_TEST_KAFKA"

_timings: dict[str, str] = {}


def _check_external(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        pytest.fail(f"{ENV_EXTERNAL}={value!r} is not host:port", pytrace=False)
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        pytest.fail(f"{ENV_EXTERNAL}={value}: cannot connect: {exc}", pytrace=False)
    return value


@pytest.fixture
def dedicated_broker() -> Iterator[KafkaBroker]:
    try:
        broker = KafkaBroker(ensure_kafka_jars()).start()
    except KafkaError as exc:
        pytest.fail(f"cannot start a dedicated Kafka broker: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def secure_kafka() -> Iterator[KafkaBroker]:
    t0 = time.monotonic()
    try:
        broker = KafkaBroker(ensure_kafka_jars(), secure=("SSL", "SASL_SSL")).start()
    except KafkaError as exc:
        pytest.fail(f"cannot start the secured Kafka broker: {exc}", pytrace=False)
    _timings["secure kafka"] = (
        f"{broker.bootstrap_for('SSL')} SSL, {broker.bootstrap_for('SASL_SSL')} SASL_SSL "
        f"(start {time.monotonic() - t0:.1f}s, pid {broker.pid}, log {broker.log_path})"
    )
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get(ENV_EXTERNAL, "").strip()
    if external:
        _timings["kafka"] = f"external broker {external}"
        yield _check_external(external)
        return

    t0 = time.monotonic()
    try:
        libs = ensure_kafka_jars()
    except KafkaError as exc:
        pytest.fail(f"cannot fetch the Kafka broker jars: {exc}", pytrace=False)
    jars_s = time.monotonic() - t0
    broker = KafkaBroker(libs)
    try:
        broker.start()
    except KafkaError as exc:
        pytest.fail(f"cannot start the Kafka broker: {exc}", pytrace=False)
    _timings["kafka"] = (
        f"{broker.bootstrap} (jars {jars_s:.1f}s, broker start {broker.startup_seconds:.1f}s, "
        f"pid {broker.pid}, log {broker.log_path})"
    )
    try:
        yield broker.bootstrap
    finally:
        t1 = time.monotonic()
        broker.stop()
        _timings["kafka"] += f", stop {time.monotonic() - t1:.1f}s"


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[..., str]:
    """``unique_name("orders")`` -> ``"orders-<test name>-<12 hex>"`` (a valid topic/group id)."""
    test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:40].strip("-")

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:12]}"

    return make


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, timing in _timings.items():
        terminalreporter.write_line(f"{name}: {timing}")
