"""The real servers the benchmark runs against, and the machine it runs on.

By default the dev servers of ``trackpipe.devservers`` are started for the run (Apache Kafka in KRaft mode
from its Maven jars, a ClickHouse server from chdb-core), on loopback ports, and stopped at the end.
``--kafka host:port`` / ``--clickhouse http://host:port`` use running ones instead (the smoke test does).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata

from trackpipe.devservers.clickhouse import ClickHouseServer, http_request
from trackpipe.devservers.kafka import KafkaBroker, ensure_kafka_jars


@dataclass
class Servers:
    kafka: str
    clickhouse_host: str
    clickhouse_port: int
    kafka_version: str
    clickhouse_version: str = ""
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                stop()
        self._stops.clear()


def _kafka_version_from_jars() -> str:
    with contextlib.suppress(Exception):
        for jar in ensure_kafka_jars().glob("kafka-clients-*.jar"):
            m = re.match(r"kafka-clients-(.+)\.jar$", jar.name)
            if m:
                return m.group(1)
    return "unknown"


def start_servers(kafka: str | None, clickhouse: str | None) -> Servers:
    """Start (concurrently) whichever of the two servers was not given."""
    stops: list[Callable[[], None]] = []

    def start_kafka() -> str:
        if kafka:
            return kafka
        broker = KafkaBroker(ensure_kafka_jars())
        broker.start()
        stops.append(broker.stop)
        return broker.bootstrap

    def start_clickhouse() -> tuple[str, int]:
        if clickhouse:
            parsed = urllib.parse.urlparse(clickhouse if "://" in clickhouse else f"http://{clickhouse}")
            return parsed.hostname or "127.0.0.1", parsed.port or 8123
        server = ClickHouseServer()
        server.start()
        stops.append(server.stop)
        return server.host, server.http_port

    with ThreadPoolExecutor(2) as pool:
        fk, fc = pool.submit(start_kafka), pool.submit(start_clickhouse)
        try:
            bootstrap = fk.result()
            ch_host, ch_port = fc.result()
        except BaseException:
            for stop in stops:
                with contextlib.suppress(Exception):
                    stop()
            raise
    servers = Servers(
        kafka=bootstrap,
        clickhouse_host=ch_host,
        clickhouse_port=ch_port,
        kafka_version=_kafka_version_from_jars() if not kafka else "external",
        _stops=stops,
    )
    try:
        servers.clickhouse_version = http_request(ch_host, ch_port, "SELECT version()", timeout=10).strip()
    except BaseException:
        servers.stop()
        raise
    return servers


def machine(servers: Servers) -> dict[str, object]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kafka": servers.kafka_version,
        "clickhouse": servers.clickhouse_version,
        "chdb": version("chdb"),
        "aiohttp": version("aiohttp"),
        "aiokafka": version("aiokafka"),
        "faust_streaming": version("faust-streaming"),
        "clickhouse_connect": version("clickhouse-connect"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
