"""The chdb-core ClickHouse dev server behaves like a real server for clickhouse-connect."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import pyarrow as pa
import pytest

from trackpipe.devservers.clickhouse import ClickHouseServer, ClickHouseServerError, http_request

pytestmark = pytest.mark.integration


@pytest.fixture
def client(clickhouse_server: Any, ch_database: str) -> Iterator[Any]:
    c = clickhouse_connect.get_client(
        host=clickhouse_server.host,
        port=clickhouse_server.http_port,
        database=ch_database,
        autogenerate_session_id=False,
    )
    try:
        yield c
    finally:
        c.close()


def test_server_version_is_chdb_core_26_9(clickhouse_server: Any, client: Any) -> None:
    if isinstance(clickhouse_server, ClickHouseServer):
        assert client.server_version.startswith("26.9")
    assert client.command("SELECT 1") == 1


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _native_string(text: str) -> bytes:
    raw = text.encode()
    return _varint(len(raw)) + raw


def test_native_tcp_port_speaks_clickhouse_protocol(clickhouse_server: Any) -> None:
    if not isinstance(clickhouse_server, ClickHouseServer):
        pytest.skip("TCP port unknown for an external server")  # env override only, never the default
    hello = (
        _varint(0)  # ClientHello
        + _native_string("trackpipe-test")
        + _varint(1)
        + _varint(0)
        + _varint(54460)  # protocol revision
        + _native_string("default")
        + _native_string("default")
        + _native_string("")
    )
    with socket.create_connection((clickhouse_server.host, clickhouse_server.tcp_port), timeout=5) as conn:
        conn.sendall(hello)
        answer = conn.recv(4096)
    # ServerHello: packet 0, server name, version major (26) and minor (9) as varints
    assert answer[:12] == _varint(0) + _native_string("ClickHouse"), answer
    assert answer[12:14] == bytes([26, 9]), answer


def test_insert_and_query_with_server_side_parameters(client: Any) -> None:
    client.command(
        "CREATE TABLE events (id UInt64, name LowCardinality(String), ts DateTime64(3, 'UTC'), "
        "attrs Map(String, String)) ENGINE = MergeTree ORDER BY id"
    )
    client.insert(
        "events",
        [
            [1, "click", dt.datetime(2024, 5, 1, 12, 0, 0, 250000), {"k": "v"}],
            [2, "view", dt.datetime(2024, 5, 1, 12, 0, 1), {}],
            [3, "it's \\ tricky", dt.datetime(2024, 5, 1, 12, 0, 2), {"a": "b"}],
        ],
        column_names=["id", "name", "ts", "attrs"],
    )
    rows = client.query(
        "SELECT id, attrs FROM events WHERE name = {name:String} AND ts >= {since:DateTime64(3, 'UTC')}",
        parameters={"name": "it's \\ tricky", "since": dt.datetime(2024, 5, 1, 12, 0, 0)},
    ).result_rows
    assert rows == [(3, {"a": "b"})]
    count = client.command(
        "SELECT count() FROM events WHERE id IN {ids:Array(UInt64)}", parameters={"ids": [1, 2]}
    )
    assert count == 2


def test_replacing_merge_tree_final(client: Any) -> None:
    client.command(
        "CREATE TABLE conv (id String, version UInt32, status String) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY id"
    )
    client.insert(
        "conv", [["a", 1, "pending"], ["b", 1, "pending"]], column_names=["id", "version", "status"]
    )
    client.insert("conv", [["a", 2, "approved"]], column_names=["id", "version", "status"])
    assert client.command("SELECT count() FROM conv") == 3
    rows = client.query("SELECT id, version, status FROM conv FINAL ORDER BY id").result_rows
    assert rows == [("a", 2, "approved"), ("b", 1, "pending")]


def test_aggregating_merge_tree_fed_by_materialized_view(client: Any) -> None:
    client.command(
        "CREATE TABLE raw (day Date, campaign String, amount Float64) ENGINE = MergeTree ORDER BY day"
    )
    client.command(
        "CREATE TABLE daily (day Date, campaign String, revenue AggregateFunction(sum, Float64), "
        "users AggregateFunction(uniq, UInt64)) ENGINE = AggregatingMergeTree ORDER BY (day, campaign) "
        "TTL day + INTERVAL 3650 DAY"
    )
    client.command(
        "CREATE MATERIALIZED VIEW daily_mv TO daily AS SELECT day, campaign, sumState(amount) AS revenue, "
        "uniqState(cityHash64(campaign, amount)) AS users FROM raw GROUP BY day, campaign"
    )
    day = dt.date(2024, 5, 1)
    client.insert(
        "raw",
        [[day, "c1", 1.5], [day, "c1", 2.5], [day, "c2", 10.0]],
        column_names=["day", "campaign", "amount"],
    )
    client.insert("raw", [[day, "c1", 6.0]], column_names=["day", "campaign", "amount"])
    rows = client.query(
        "SELECT campaign, sumMerge(revenue), uniqMerge(users) FROM daily GROUP BY campaign ORDER BY campaign"
    ).result_rows
    assert rows == [("c1", 10.0, 3), ("c2", 10.0, 1)]


def _insert_twice(client: Any, table: str, token: str, settings: dict[str, Any] | None = None) -> None:
    data = pa.table({"k": ["a", "b"], "v": pa.array([1, 2], pa.uint64())})
    for _ in range(2):
        client.insert_arrow(table, data, settings={"insert_deduplication_token": token, **(settings or {})})


def test_insert_deduplication_token_on_plain_merge_tree(client: Any) -> None:
    client.command(
        "CREATE TABLE dedup (k String, v UInt64) ENGINE = MergeTree ORDER BY k "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    client.command("CREATE TABLE no_window (k String, v UInt64) ENGINE = MergeTree ORDER BY k")
    _insert_twice(client, "dedup", "batch-1")
    _insert_twice(client, "no_window", "batch-1")
    assert client.command("SELECT count() FROM dedup") == 2  # the retry was dropped
    assert client.command("SELECT count() FROM no_window") == 4  # no window: no deduplication
    client.insert_arrow(
        "dedup",
        pa.table({"k": ["a"], "v": pa.array([1], pa.uint64())}),
        settings={"insert_deduplication_token": "batch-2"},
    )
    assert client.command("SELECT count() FROM dedup") == 3  # a new token is a new block


@pytest.mark.parametrize(
    ("mv_dedup_setting", "target_window", "expected_sum_a"),
    [
        # Exactly-once through the MV needs both: the setting (default 1 in 26.9) and a dedup
        # window on the MV's target table.
        (1, 100, 1),
        # Without a window on the target, the MV receives the retried block again, even though
        # the source table dropped it.
        (1, 0, 2),
        # With the setting off, the MV always receives the retried block.
        (0, 100, 2),
    ],
)
def test_insert_deduplication_through_materialized_view(
    client: Any, mv_dedup_setting: int, target_window: int, expected_sum_a: int
) -> None:
    client.command(
        "CREATE TABLE src (k String, v UInt64) ENGINE = MergeTree ORDER BY k "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    client.command(
        "CREATE TABLE agg (k String, s AggregateFunction(sum, UInt64)) "
        "ENGINE = AggregatingMergeTree ORDER BY k "
        f"SETTINGS non_replicated_deduplication_window = {target_window}"
    )
    client.command("CREATE MATERIALIZED VIEW agg_mv TO agg AS SELECT k, sumState(v) AS s FROM src GROUP BY k")
    _insert_twice(
        client, "src", "batch-1", {"deduplicate_blocks_in_dependent_materialized_views": mv_dedup_setting}
    )
    assert client.command("SELECT count() FROM src") == 2
    sums = dict(client.query("SELECT k, sumMerge(s) FROM agg GROUP BY k").result_rows)
    assert sums == {"a": expected_sum_a, "b": 2 * expected_sum_a}


def test_server_lifecycle_and_port_in_use() -> None:
    server = ClickHouseServer(startup_timeout=60)
    with server:
        assert server.startup_seconds is not None and server.startup_seconds < 30
        assert http_request(server.host, server.http_port, path="/ping").strip() == "Ok."
        workdir = server.workdir
        assert workdir is not None and (workdir / "config.xml").exists()
        http_port, tcp_port = server.http_port, server.tcp_port
        busy = ClickHouseServer(http_port=http_port, tcp_port=tcp_port, startup_timeout=30)
        with pytest.raises(ClickHouseServerError, match="already in use"):
            busy.start()
        assert not busy.is_running()
        # the first server is unaffected
        assert server.http_query("SELECT 1").strip() == "1"
    assert not server.is_running()
    assert not workdir.exists()
    with pytest.raises(OSError):
        socket.create_connection((server.host, http_port), timeout=2).close()
