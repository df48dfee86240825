"""Shared pytest wiring: real-server fixtures live in their own plugin modules."""

pytest_plugins = ["tests.fixtures_kafka", "tests.fixtures_clickhouse"]
