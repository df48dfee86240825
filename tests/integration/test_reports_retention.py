"""TRACKPIPE_RETENTION_DAYS: a TTL on every table, set and removed idempotently after the migrations."""

from __future__ import annotations

import pytest

from sinks.migrate import migrate
from sinks.report_retention import TTL_COLUMNS, apply_retention, check_days, current_ttl_days
from sinks.server_backend import ServerBackend


def test_retention_is_set_changed_and_removed(clickhouse_server, ch_database) -> None:
    with ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database) as b:
        migrate(b)
        assert apply_retention(b, 0) == []  # nothing to remove
        assert apply_retention(b, 400) == list(TTL_COLUMNS)
        assert {t: current_ttl_days(b, t) for t in TTL_COLUMNS} == dict.fromkeys(TTL_COLUMNS, 400)
        assert apply_retention(b, 400) == []  # already so: no ALTER
        # a row older than the retention goes at the next merge; a recent one stays
        b.command(
            "INSERT INTO events_raw (event_id, type, received_at, occurred_at, project_id, visitor_id)"
            " VALUES ('old', 'click', '2001-01-01 00:00:00', '2001-01-01 00:00:00', 'p', 'v'),"
            " ('new', 'click', now64(3), now64(3), 'p', 'v')"
        )
        b.command("OPTIMIZE TABLE events_raw FINAL")
        assert [r[0] for r in b.query("SELECT event_id FROM events_raw ORDER BY event_id")] == ["new"]
        assert apply_retention(b, 30) == list(TTL_COLUMNS)
        assert current_ttl_days(b, "conversions") == 30
        assert apply_retention(b, 0) == list(TTL_COLUMNS)
        assert {t: current_ttl_days(b, t) for t in TTL_COLUMNS} == dict.fromkeys(TTL_COLUMNS)


@pytest.mark.parametrize("days", [-1, 36501, 1.5, "30", True])
def test_retention_days_must_be_a_plain_number_in_range(days: object) -> None:
    with pytest.raises(ValueError, match="retention days"):
        check_days(days)
