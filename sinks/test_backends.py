"""The same behavioural checks against both ClickHouseBackend implementations.

* ServerBackend runs in this process against the ``clickhouse_server`` fixture (a fresh ``ch_database``
  per test).
* ChdbBackend checks run in a subprocess each (``python -m sinks.test_backends <check> <path>``): a
  process can only have one chdb path open, and this pytest process may host other chdb users.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sinks.backend import BackendError, ClickHouseBackend
from sinks.chdb_backend import ChdbBackend
from sinks.server_backend import ServerBackend

# Makes the fixtures available when this file is run on its own (no-op if conftest loaded them).
pytest_plugins = ["tests.fixtures_clickhouse"]

REPO_ROOT = Path(__file__).resolve().parents[1]
UTC = dt.UTC

TYPED_DDL = (
    "CREATE TABLE typed (s String, lc LowCardinality(String), ts DateTime64(3, 'UTC'), "
    "f Nullable(Float64), d Decimal(18, 4), a Array(String), m Map(String, String)) "
    "ENGINE = MergeTree ORDER BY (s, ts) SETTINGS non_replicated_deduplication_window = 100"
)


def typed_table() -> pa.Table:
    # Columns deliberately not in table order: inserts match columns by name.
    return pa.table(
        {
            "m": pa.array([[("k", "v"), ("k2", "v2")], [], [("é", "ü")]], pa.map_(pa.string(), pa.string())),
            "s": pa.array(["a", "b", "c"]),
            "lc": pa.array(["x", "y", "x"]).dictionary_encode(),
            "ts": pa.array(
                [
                    dt.datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC),
                    dt.datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
                    dt.datetime(1999, 12, 31, 12, 0, tzinfo=UTC),
                ],
                pa.timestamp("ms", tz="UTC"),
            ),
            "f": pa.array([1.5, None, -0.25], pa.float64()),
            "d": pa.array(
                [Decimal("1.2345"), Decimal("-99999999999999.9999"), Decimal("0.0001")], pa.decimal128(18, 4)
            ),
            "a": pa.array([["p", "q"], [], ["it's", "back\\slash"]], pa.list_(pa.string())),
        }
    )


EXPECTED_TYPED_ROWS = [
    (
        "a",
        "x",
        dt.datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC),
        1.5,
        Decimal("1.2345"),
        ["p", "q"],
        {"k": "v", "k2": "v2"},
    ),
    (
        "b",
        "y",
        dt.datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
        None,
        Decimal("-99999999999999.9999"),
        [],
        {},
    ),
    (
        "c",
        "x",
        dt.datetime(1999, 12, 31, 12, 0, tzinfo=UTC),
        -0.25,
        Decimal("0.0001"),
        ["it's", "back\\slash"],
        {"é": "ü"},
    ),
]


# -- shared checks (each gets a backend on an empty database) --------------------------------------


def check_protocol_and_version(b: ClickHouseBackend) -> None:
    assert isinstance(b, ClickHouseBackend)
    version = b.server_version()
    assert version.split(".")[0].isdigit(), version
    assert b.query("SELECT currentDatabase()") == [(b.database,)]


def check_ddl_and_typed_arrow_insert(b: ClickHouseBackend) -> None:
    b.command(TYPED_DDL)
    types = b.query(
        "SELECT name, type FROM system.columns "
        "WHERE database = {db:String} AND table = 'typed' ORDER BY position",
        {"db": b.database},
    )
    assert types == [
        ("s", "String"),
        ("lc", "LowCardinality(String)"),
        ("ts", "DateTime64(3, 'UTC')"),
        ("f", "Nullable(Float64)"),
        ("d", "Decimal(18, 4)"),
        ("a", "Array(String)"),
        ("m", "Map(String, String)"),
    ]
    b.insert_arrow("typed", typed_table())
    b.insert_arrow("typed", typed_table().slice(0, 0))  # empty: no-op
    assert b.query("SELECT s, lc, ts, f, d, a, m FROM typed ORDER BY s") == EXPECTED_TYPED_ROWS
    # Values arrived as values, not as text: typed functions work on them.
    assert b.query("SELECT sum(d), toYear(max(ts)), m['k'] FROM typed WHERE s = 'a' GROUP BY m") == [
        (Decimal("1.2345"), 2024, "v")
    ]
    b.command("DROP TABLE typed SYNC")
    assert b.query("EXISTS TABLE typed") == [(0,)]


def check_query_params_are_bound_server_side(b: ClickHouseBackend) -> None:
    b.command(TYPED_DDL)
    b.insert_arrow("typed", typed_table())
    tricky = 'it\'s \\ \t "quoted" {x:String} %(y)s'
    b.command(
        "INSERT INTO typed (s, lc, ts, d) "
        "SELECT {s:String}, {lc:String}, {ts:DateTime64(3, 'UTC')}, {d:Decimal(18, 4)}",
        {
            "s": tricky,
            "lc": "z",
            "ts": dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            "d": Decimal("-7.5"),
        },
    )
    assert b.query("SELECT s, ts, d FROM typed WHERE s = {s:String}", {"s": tricky}) == [
        (tricky, dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), Decimal("-7.5"))
    ]
    assert b.query(
        "SELECT s FROM typed WHERE s IN {names:Array(String)} AND ts >= {since:DateTime64(3, 'UTC')} "
        "ORDER BY s LIMIT {n:UInt32}",
        {"names": ["a", "b", "c"], "since": dt.datetime(2024, 1, 1, tzinfo=UTC), "n": 5},
    ) == [("a",), ("b",)]
    # An injection attempt is just a string value.
    assert b.query("SELECT count() FROM typed WHERE s = {s:String}", {"s": "a' OR 1=1 --"}) == [(0,)]
    assert b.query("SELECT {v:Nullable(Float64)}, {i:Int64}", {"v": None, "i": -(2**62)}) == [
        (None, -(2**62))
    ]
    # Params without placeholders are rejected, never formatted client-side.
    with pytest.raises(BackendError) as err:
        b.query("SELECT %(x)s", {"x": 1})
    assert not err.value.retriable
    # A value that does not parse as its declared type is a permanent error.
    with pytest.raises(BackendError) as err:
        b.query("SELECT {n:UInt8}", {"n": "not a number"})
    assert not err.value.retriable


def check_dedup_token_idempotency(b: ClickHouseBackend) -> None:
    b.command(TYPED_DDL)
    data = typed_table()
    b.insert_arrow("typed", data, dedup_token="batch-1")
    b.insert_arrow("typed", data, dedup_token="batch-1")  # retry: dropped
    assert b.query("SELECT count() FROM typed") == [(3,)]
    b.insert_arrow("typed", data, dedup_token="batch-2")  # same rows, new batch: stored
    assert b.query("SELECT count() FROM typed") == [(6,)]
    b.insert_arrow("typed", data.slice(0, 1), dedup_token='it\'s \\ "odd" token')
    b.insert_arrow("typed", data.slice(0, 1), dedup_token='it\'s \\ "odd" token')
    assert b.query("SELECT count() FROM typed") == [(7,)]


def check_dedup_token_through_materialized_view(b: ClickHouseBackend) -> None:
    b.command(
        "CREATE TABLE src (k String, v UInt64) ENGINE = MergeTree ORDER BY k "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    b.command(
        "CREATE TABLE agg (k String, s AggregateFunction(sum, UInt64)) "
        "ENGINE = AggregatingMergeTree ORDER BY k SETTINGS non_replicated_deduplication_window = 100"
    )
    b.command("CREATE MATERIALIZED VIEW agg_mv TO agg AS SELECT k, sumState(v) AS s FROM src GROUP BY k")
    data = pa.table({"k": ["a", "b", "a"], "v": pa.array([1, 2, 3], pa.uint64())})
    for _ in range(2):
        b.insert_arrow("src", data, dedup_token="mv-batch-1")
    b.insert_arrow("src", data, dedup_token="mv-batch-2")
    assert b.query("SELECT count() FROM src") == [(6,)]
    assert b.query("SELECT k, sumMerge(s) FROM agg GROUP BY k ORDER BY k") == [("a", 8), ("b", 4)]


def check_errors_are_backend_errors(b: ClickHouseBackend) -> None:
    with pytest.raises(BackendError) as err:
        b.query("SELEC 1")
    assert not err.value.retriable and err.value.code == 62  # SYNTAX_ERROR
    with pytest.raises(BackendError) as err:
        b.command("DROP TABLE no_such_table")
    # the schema is behind the release (decision 72): wait for `trackpipe migrate`, never quarantine data
    assert err.value.retriable and err.value.code == 60  # UNKNOWN_TABLE
    b.command("CREATE TABLE nums (n UInt64) ENGINE = MergeTree ORDER BY n")
    with pytest.raises(BackendError) as err:
        b.insert_arrow("nums", pa.table({"n": ["definitely not a number"]}))
    assert not err.value.retriable
    with pytest.raises(BackendError) as err:
        b.insert_arrow("no_such_table", pa.table({"n": [1]}))
    assert err.value.retriable
    with pytest.raises(BackendError) as err:  # a column this release writes and the schema lacks
        b.insert_arrow("nums", pa.table({"n": [1], "added_by_a_later_migration": ["x"]}))
    assert err.value.retriable, err.value
    assert b.query("SELECT count() FROM nums") == [(0,)]


def check_arrow_conversions(b: ClickHouseBackend) -> None:
    b.command("CREATE TABLE conv (n UInt64, s String, x String DEFAULT 'dflt') ENGINE = MergeTree ORDER BY n")
    # Parsable strings convert, nulls in non-Nullable columns become the type default, missing columns
    # get their DEFAULT expression - identical for the server's Arrow input and chdb's Python().
    b.insert_arrow("conv", pa.table({"n": ["12", "13"], "s": pa.array(["a", None])}))
    assert b.query("SELECT n, s, x FROM conv ORDER BY n") == [(12, "a", "dflt"), (13, "", "dflt")]
    with pytest.raises(BackendError) as err:
        b.insert_arrow("conv", pa.table({"n": ["14", "not a number"]}))
    assert not err.value.retriable and err.value.code == 6  # CANNOT_PARSE_TEXT
    assert b.query("SELECT count() FROM conv") == [(2,)]


def check_result_types_match(b: ClickHouseBackend) -> None:
    # Both backends decode with clickhouse-connect's Native decoder, so values have the same Python types.
    rows = b.query(
        "SELECT toUUID('00000000-0000-0000-0000-000000000001'), "
        "CAST('b', 'Enum8(\\'a\\' = 1, \\'b\\' = 2)'), "
        "toIPv4('10.0.0.1'), toInt128(-5), toUInt64(18446744073709551615), true, toDate('2024-01-02'), "
        "toDateTime64('2024-01-02 03:04:05.678', 3, 'UTC'), tuple(1, 'x'), [map('k', [1, 2])], "
        "toDecimal128('1.5', 10), 'lc'::LowCardinality(String), CAST(NULL, 'Nullable(String)')"
    )
    assert rows == [
        (
            uuid.UUID("00000000-0000-0000-0000-000000000001"),
            "b",
            ipaddress.IPv4Address("10.0.0.1"),
            -5,
            18446744073709551615,
            True,
            dt.date(2024, 1, 2),
            dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            (1, "x"),
            [{"k": [1, 2]}],
            Decimal("1.5"),
            "lc",
            None,
        )
    ]
    assert b.query("SELECT number FROM numbers(3) WHERE number > {n:UInt8}", {"n": 5}) == []


def check_concurrent_use_from_threads(b: ClickHouseBackend) -> None:
    b.command(
        "CREATE TABLE conc (worker UInt32, n UInt64) ENGINE = MergeTree ORDER BY (worker, n) "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            data = pa.table(
                {"worker": pa.array([worker] * 1000, pa.uint32()), "n": pa.array(range(1000), pa.uint64())}
            )
            for attempt in range(2):  # second attempt is a retry with the same token
                b.insert_arrow("conc", data, dedup_token=f"w{worker}")
                assert b.query(
                    "SELECT count() >= 1000 FROM conc WHERE worker = {w:UInt32}", {"w": worker}
                ) == [(True,)], attempt
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert b.query("SELECT worker, count() FROM conc GROUP BY worker ORDER BY worker") == [
        (i, 1000) for i in range(6)
    ]


CHECKS: dict[str, Callable[[ClickHouseBackend], None]] = {
    fn.__name__.removeprefix("check_"): fn
    for fn in (
        check_protocol_and_version,
        check_ddl_and_typed_arrow_insert,
        check_query_params_are_bound_server_side,
        check_dedup_token_idempotency,
        check_dedup_token_through_materialized_view,
        check_errors_are_backend_errors,
        check_arrow_conversions,
        check_result_types_match,
        check_concurrent_use_from_threads,
    )
}


# -- ServerBackend (in process) ---------------------------------------------------------------------


@pytest.fixture
def server_backend(clickhouse_server: Any, ch_database: str) -> Iterator[ServerBackend]:
    backend = ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database)
    try:
        yield backend
    finally:
        backend.close()


@pytest.mark.integration
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_server_backend(check: str, server_backend: ServerBackend) -> None:
    CHECKS[check](server_backend)


@pytest.mark.integration
def test_server_backend_creates_missing_database(clickhouse_server: Any) -> None:
    name = f"test_{uuid.uuid4().hex}"
    with ServerBackend(clickhouse_server.host, clickhouse_server.http_port, name) as backend:
        try:
            assert backend.query("SELECT currentDatabase()") == [(name,)]
        finally:
            backend.command(f"DROP DATABASE `{name}` SYNC")


def test_server_backend_down_is_retriable() -> None:
    from trackpipe.devservers.clickhouse import pick_free_ports

    port = pick_free_ports(1)[0]  # nothing listens there
    backend = ServerBackend("127.0.0.1", port, "whatever", connect_timeout=2, send_receive_timeout=2)
    for call in (
        lambda: backend.query("SELECT 1"),
        lambda: backend.command("SELECT 1"),
        lambda: backend.insert_arrow("t", pa.table({"n": [1]}), dedup_token="x"),
        backend.server_version,
    ):
        with pytest.raises(BackendError) as err:
            call()
        assert err.value.retriable, err.value
    backend.close()
    with pytest.raises(BackendError) as err:
        backend.query("SELECT 1")
    assert not err.value.retriable


# -- ChdbBackend (one subprocess per check) -----------------------------------------------------------


def run_chdb(*args: str, timeout: float = 180) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "sinks.test_backends", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"chdb subprocess {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_chdb_backend(check: str, tmp_path: Path) -> None:
    out = run_chdb("check", check, str(tmp_path / "chdb"))
    assert f"ok {check}" in out


def test_chdb_backend_data_persists_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "chdb")
    run_chdb("persist-write", path)
    out = run_chdb("persist-read", path)
    assert "ok persist-read" in out


def test_chdb_backend_path_is_locked_while_open(tmp_path: Path) -> None:
    out = run_chdb("lock-probe", str(tmp_path / "chdb"))
    assert "ok lock-probe" in out


def _chdb_main(argv: list[str]) -> int:
    """Entry point of the chdb subprocesses (``python -m sinks.test_backends <mode> ...``)."""
    mode = argv[0]
    if mode == "check":
        name, path = argv[1], argv[2]
        with ChdbBackend(path, f"db_{uuid.uuid4().hex}") as backend:
            assert backend.server_version().startswith("26.9"), backend.server_version()
            CHECKS[name](backend)
        print(f"ok {name}")
    elif mode == "persist-write":
        with ChdbBackend(argv[1], "persisted") as backend:
            backend.command(TYPED_DDL)
            backend.insert_arrow("typed", typed_table(), dedup_token="p1")
        print("ok persist-write")
    elif mode == "persist-read":
        with ChdbBackend(argv[1], "persisted") as backend:
            rows = backend.query("SELECT s, lc, ts, f, d, a, m FROM typed ORDER BY s")
            assert rows == EXPECTED_TYPED_ROWS, rows
            backend.insert_arrow("typed", typed_table(), dedup_token="p1")  # dedup state persisted too
            assert backend.query("SELECT count() FROM typed") == [(3,)]
        print("ok persist-read")
    elif mode == "lock-probe":
        path = argv[1]
        with ChdbBackend(path, "locked"):
            env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
            probe = subprocess.run(
                [sys.executable, "-m", "sinks.test_backends", "lock-open", path],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert probe.returncode == 0 and "locked as expected" in probe.stdout, probe.stdout + probe.stderr
        # closing released the lock: another process can open it now
        probe = subprocess.run(
            [sys.executable, "-m", "sinks.test_backends", "lock-open", path, "--expect-open"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert probe.returncode == 0 and "opened" in probe.stdout, probe.stdout + probe.stderr
        print("ok lock-probe")
    elif mode == "lock-open":
        try:
            with ChdbBackend(argv[1], "locked") as backend:
                backend.query("SELECT 1")
        except BackendError as exc:
            assert "--expect-open" not in argv, exc
            assert not exc.retriable and "lock" in str(exc).lower(), exc
            print("locked as expected")
        else:
            assert "--expect-open" in argv, "second process opened a path that another process holds"
            print("opened")
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(_chdb_main(sys.argv[1:]))
