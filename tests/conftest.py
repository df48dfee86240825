"""Shared pytest wiring: real-server fixtures live in their own plugin modules.

Every test that talks to a server (a file under tests/integration, or a test using a server fixture) is
marked ``integration`` here, so ``make test-fast`` (``-m "not integration"``) starts no server."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_clickhouse"]

SERVER_FIXTURES = frozenset({"kafka_bootstrap", "secure_kafka", "clickhouse_server", "ch_database"})
INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        in_dir = INTEGRATION_DIR in Path(str(item.path)).parents
        if in_dir or SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
