"""ClickHouse fixtures (pytest plugin, loaded from tests/conftest.py).

* ``clickhouse_server`` (session): a real ClickHouse server started from chdb-core
  (:class:`trackpipe.devservers.clickhouse.ClickHouseServer`), or the server named by
  ``TRACKPIPE_TEST_CLICKHOUSE=http://host:port`` if set. Has ``host``, ``http_port``, ``url``.
  Never skipped: if it cannot be started or reached, the tests using it fail with the reason.
* ``ch_database`` (function): a fresh, uniquely named database on that server, dropped afterwards.
* ``chdb_path`` (session): the one chdb data path for in-process chdb use in this pytest process
  (a process can only have one chdb path open at a time); share it and use unique database names.
"""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from trackpipe.devservers.clickhouse import ClickHouseServer, ClickHouseServerError, http_request

ENV_VAR = "TRACKPIPE_TEST_CLICKHOUSE"


@dataclass(frozen=True)
class ExternalClickHouse:
    """An already running server (from ``TRACKPIPE_TEST_CLICKHOUSE``); same attributes as ClickHouseServer."""

    host: str
    http_port: int
    tcp_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def http_query(self, sql: str, timeout: float = 30.0) -> str:
        return http_request(self.host, self.http_port, sql, timeout=timeout)


def _external_from_env(value: str) -> ExternalClickHouse:
    parsed = urllib.parse.urlparse(value if "://" in value else f"http://{value}")
    if parsed.scheme != "http" or not parsed.hostname:
        pytest.fail(f"{ENV_VAR}={value!r}: expected http://host:port", pytrace=False)
    server = ExternalClickHouse(host=parsed.hostname, http_port=parsed.port or 8123)
    try:
        answer = http_request(server.host, server.http_port, path="/ping", timeout=5).strip()
    except OSError as exc:
        pytest.fail(f"{ENV_VAR}={value!r}: ClickHouse not reachable: {exc}", pytrace=False)
    if answer != "Ok.":
        pytest.fail(f"{ENV_VAR}={value!r}: /ping answered {answer!r}, not 'Ok.'", pytrace=False)
    return server


@pytest.fixture(scope="session")
def clickhouse_server() -> Iterator[ClickHouseServer | ExternalClickHouse]:
    external = os.environ.get(ENV_VAR, "").strip()
    if external:
        yield _external_from_env(external)
        return
    server = ClickHouseServer()
    try:
        server.start()
    except ClickHouseServerError as exc:
        pytest.fail(f"could not start the ClickHouse dev server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ch_database(clickhouse_server: ClickHouseServer | ExternalClickHouse) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex}"
    clickhouse_server.http_query(f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        clickhouse_server.http_query(f"DROP DATABASE IF EXISTS `{name}` SYNC")


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb")
