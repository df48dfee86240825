"""docs/clickhouse.md cannot rot: its tables and columns are exactly those of the schema version it says
it covers (and still exist, with those types, in the latest schema), and every ```sql block in it runs on
a real ClickHouse server and answers what it must on a known data set."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from schemas.reports import ProjectsQuery, TopEventsQuery
from sinks import reports
from sinks.migrate import applied_versions, load_migrations, migrate
from sinks.server_backend import ServerBackend

DOC = Path(__file__).resolve().parents[2] / "docs" / "clickhouse.md"
PARAMS = {
    "project": "p1",
    "from": "2026-01-01 00:00:00.000",
    "to": "2026-02-01 00:00:00.000",
    "experiment": "x1",
}

_TS = pa.timestamp("ms", tz="UTC")
_STRS = pa.list_(pa.string())
_DEC = pa.decimal128(18, 4)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


# event_id, type, time, project, visitor, goals, revenue, transaction id, campaign
EVENTS = [
    ("e01", "view_exp", at(10, 9), "p1", "v1", [], None, "", "spring"),
    ("e02", "view_exp", at(10, 9, 5), "p1", "v2", [], None, "", ""),
    ("e03", "hit_goal", at(10, 9, 10), "p1", "v1", ["signup"], None, "", "spring"),
    ("e04", "hit_goal", at(10, 9, 20), "p1", "v2", ["signup"], None, "", ""),
    ("e05", "hit_goal", at(11, 10), "p1", "v3", ["signup"], None, "", "spring"),
    ("e06", "transaction", at(11, 11), "p1", "v1", ["purchase"], "100", "T1", "spring"),
    ("e07", "transaction", at(11, 11, 30), "p1", "v1", ["purchase"], "100", "T1", "spring"),  # T1 again
    ("e08", "transaction", at(12, 12), "p1", "v4", ["purchase", "upsell"], "50.5", "T2", "autumn"),
    ("e09", "transaction", at(12, 13), "p1", "v2", ["purchase"], "10", "", ""),  # no transaction id
    ("e10", "hit_goal", at(12, 14), "p2", "v9", ["signup"], None, "", "spring"),  # another project
]
# goal, key, visitor, event, time, revenue, transaction id, version (what the pipeline makes of EVENTS)
CONVERSIONS = [
    ("p1", "signup", "visitor:v1", "v1", "e03", at(10, 9, 10), "0", "", 1),
    ("p1", "signup", "visitor:v2", "v2", "e04", at(10, 9, 20), "0", "", 2),
    ("p1", "signup", "visitor:v3", "v3", "e05", at(11, 10), "0", "", 3),
    ("p1", "purchase", "tx:T1", "v1", "e06", at(11, 11), "100", "T1", 4),
    ("p1", "purchase", "tx:T2", "v4", "e08", at(12, 12), "50.5", "T2", 6),
    ("p1", "upsell", "tx:T2", "v4", "e08", at(12, 12), "50.5", "T2", 6),
    ("p1", "purchase", "ev:e09", "v2", "e09", at(12, 13), "10", "", 7),
    ("p2", "signup", "visitor:v9", "v9", "e10", at(12, 14), "0", "", 8),
]
T1_AGAIN = ("p1", "purchase", "tx:T1", "v1", "e07", at(11, 11, 30), "100", "T1", 5)
# a transaction counted first (version 9), then reversed by a later status (version 10, is_deleted = 1):
# the latest version wins and a reversed conversion counts nowhere
T3 = ("p1", "purchase", "tx:T3", "v3", "e11", at(12, 15), "30", "T3", 9)
T3_REVERSED = (*T3[:-1], 10)

# the session of each event (events_raw.session_id); s4 was later merged into another session
SESSION_OF = {"e01": "s1", "e03": "s1", "e06": "s1", "e07": "s1", "e02": "s2", "e04": "s2", "e09": "s2"}
SESSION_OF |= {"e05": "s3", "e08": "s4", "e10": "s9"}
# session, visitor, deleted, version
SESSIONS = [
    ("s1", "v1", 0, 1),
    ("s2", "v2", 0, 1),
    ("s3", "v3", 0, 1),
    ("s4", "v4", 0, 1),
    ("s4", "v4", 1, 2),
]
# experiment x1: visitor, variation, first seen (v4 saw it only after converting)
EXPOSURES = [("v1", "A", at(10, 8)), ("v4", "A", at(12, 13)), ("v2", "B", at(10, 8)), ("v3", "B", at(10, 8))]

TOP5 = [("purchase", 3, 3, 0.75, 160.5), ("signup", 3, 3, 0.75, 0.0), ("upsell", 1, 1, 0.25, 50.5)]

#: What each example (by the title in its first line) answers on the data set above.
EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "Top-5 goals by conversions, with conversion rate": TOP5,
    "Top-5 goals with argMax instead of FINAL": [(g, c, v, r) for g, c, v, _, r in TOP5],
    "Visitors of the period from the daily aggregates": [(4,)],
    "Funnel by session: viewed, then signed up, then bought": [(3, 2, 2, 2)],
    "Experiment lift per variation": [("A", 2, 1, 0.5, 0.0), ("B", 2, 2, 1.0, 0.5)],
    "Conversions per day and goal": [
        (date(2026, 1, 10), "signup", 2, 0.0),
        (date(2026, 1, 11), "purchase", 1, 100.0),  # T1 counted once, on its latest arrival
        (date(2026, 1, 11), "signup", 1, 0.0),
        (date(2026, 1, 12), "purchase", 2, 60.5),
        (date(2026, 1, 12), "upsell", 1, 50.5),
    ],
    "Revenue by campaign, each transaction once": [
        ("spring", 1, 100.0),
        ("autumn", 1, 50.5),
        ("(none)", 1, 10.0),
    ],
    "Conversions stored more than once (not merged yet)": [
        ("purchase", "tx:T1", 2, 5),
        ("purchase", "tx:T3", 2, 10),
    ],
    "Rows stored and rows that count": [(10, 7, 10, 9)],
    "Transactions sent more than once": [("T1", 2, at(11, 11), at(11, 11, 30))],
    "Applied migrations": [(m.version, m.name) for m in load_migrations()],
}


def sql_blocks(text: str) -> list[tuple[str, str]]:
    """(title, sql) of every ```sql block; the title is the block's first line, a `-- ` comment."""
    blocks = []
    for body in re.findall(r"^```sql\n(.*?)^```", text, flags=re.S | re.M):
        first = body.splitlines()[0]
        assert first.startswith("-- "), f"a ```sql block must start with a '-- title' line: {first!r}"
        blocks.append((first[3:].strip(), body))
    return blocks


def documented_columns(text: str) -> dict[str, dict[str, str]]:
    """Per table heading ### `name`: the rows | `column` | `Type` | meaning | of its table."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        heading = re.match(r"^#{1,6} ", line)
        if heading:
            name = re.fullmatch(r"### `(\w+)`", line)
            current = tables.setdefault(name.group(1), {}) if name else None
            continue
        row = re.match(r"^\| `(\w+)` \| `([^`]+)` \|", line)
        if current is not None and row:
            assert row.group(1) not in current, f"column {row.group(1)} documented twice"
            current[row.group(1)] = row.group(2)
    return tables


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return round(value, 6)
    return value


@pytest.fixture
def backend(clickhouse_server, ch_database) -> Iterator[ServerBackend]:
    b = ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database)
    try:
        migrate(b)
        yield b
    finally:
        b.close()


def load_data_set(b: ServerBackend) -> None:
    # keep unmerged duplicates visible, so the dedup examples have something to find
    b.command("SYSTEM STOP MERGES events_raw")
    b.command("SYSTEM STOP MERGES conversions")
    b.insert_arrow(
        "sessions",
        pa.table(
            {
                "project_id": pa.array(["p1"] * len(SESSIONS)),
                "account_id": pa.array(["a1"] * len(SESSIONS)),
                "session_id": pa.array([s[0] for s in SESSIONS]),
                "visitor_id": pa.array([s[1] for s in SESSIONS]),
                "started_at": pa.array([at(10, 8)] * len(SESSIONS), _TS),
                "ended_at": pa.array([at(12, 14)] * len(SESSIONS), _TS),
                "events": pa.array([1] * len(SESSIONS), pa.uint32()),
                "is_deleted": pa.array([s[2] for s in SESSIONS], pa.uint8()),
                "version": pa.array([s[3] for s in SESSIONS], pa.uint64()),
            }
        ),
    )
    b.insert_arrow(
        "variation_exposures",
        pa.table(
            {
                "project_id": pa.array(["p1"] * len(EXPOSURES)),
                "account_id": pa.array(["a1"] * len(EXPOSURES)),
                "experiment_id": pa.array(["x1"] * len(EXPOSURES)),
                "variation_id": pa.array([x[1] for x in EXPOSURES]),
                "visitor_id": pa.array([x[0] for x in EXPOSURES]),
                "first_seen_at": pa.array([x[2] for x in EXPOSURES], _TS),
                "version": pa.array([1] * len(EXPOSURES), pa.uint64()),
            }
        ),
    )
    cols = list(zip(*EVENTS, strict=True))
    events = pa.table(
        {
            "event_id": pa.array(cols[0]),
            "type": pa.array(cols[1]),
            "received_at": pa.array(cols[2], _TS),
            "occurred_at": pa.array(cols[2], _TS),
            "account_id": pa.array(["a1"] * len(EVENTS)),
            "project_id": pa.array(cols[3]),
            "visitor_id": pa.array(cols[4]),
            "goal_ids": pa.array(cols[5], _STRS),
            "revenue": pa.array([None if r is None else Decimal(r) for r in cols[6]], _DEC),
            "transaction_id": pa.array(cols[7]),
            "seg_campaign": pa.array(cols[8]),
            "source_format": pa.array(["convert_json"] * len(EVENTS)),
            "session_id": pa.array([SESSION_OF[e[0]] for e in EVENTS]),
            "schema_version": pa.array([1] * len(EVENTS), pa.uint16()),
        }
    )
    b.insert_arrow("events_raw", events)
    b.insert_arrow("events_raw", events.filter(pa.array([e[0] == "e08" for e in EVENTS])))  # a replay
    for rows, deleted in ((CONVERSIONS, 0), ([T1_AGAIN, T3], 0), ([T3_REVERSED], 1)):
        c = list(zip(*rows, strict=True))
        b.insert_arrow(
            "conversions",
            pa.table(
                {
                    "project_id": pa.array(c[0]),
                    "goal_id": pa.array(c[1]),
                    "conversion_key": pa.array(c[2]),
                    "visitor_id": pa.array(c[3]),
                    "event_id": pa.array(c[4]),
                    "event_type": pa.array(
                        ["hit_goal" if k.startswith("visitor:") else "transaction" for k in c[2]]
                    ),
                    "occurred_at": pa.array(c[5], _TS),
                    "received_at": pa.array(c[5], _TS),
                    "revenue": pa.array([Decimal(r) for r in c[6]], _DEC),
                    "transaction_id": pa.array(c[7]),
                    "version": pa.array(c[8], pa.uint64()),
                    "is_deleted": pa.array([deleted] * len(rows), pa.uint8()),
                }
            ),
        )


def columns_of(b: ServerBackend) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for table, column, ctype in b.query(
        "SELECT table, name, type FROM system.columns WHERE database = {db:String} ORDER BY table, position",
        {"db": b.database},
    ):
        found.setdefault(table, {})[column] = ctype
    return found


def covered_version(text: str) -> int:
    found = re.search(r"covers schema version (\d+)", text)
    assert found, "docs/clickhouse.md must say which schema version it 'covers schema version N'"
    return int(found.group(1))


def test_the_covered_schema_version_is_documented_exactly(clickhouse_server, ch_database) -> None:
    """Every table and column of the schema the page covers is documented, with its exact type."""
    text = DOC.read_text(encoding="utf-8")
    version = covered_version(text)
    migrations = [m for m in load_migrations() if m.version <= version]
    assert migrations and migrations[-1].version == version, f"no migration {version:04d}"
    with ServerBackend(clickhouse_server.host, clickhouse_server.http_port, ch_database) as b:
        applied_versions(b)  # the ledger table
        for mig in migrations:
            for statement in mig.statements:
                b.command(statement)
        actual = columns_of(b)
    documented = documented_columns(text)
    assert sorted(documented) == sorted(actual), "docs/clickhouse.md must document exactly these tables"
    for table, columns in actual.items():
        missing = {c: t for c, t in columns.items() if c not in documented[table]}
        assert not missing, f"columns of {table} not documented in docs/clickhouse.md: {missing}"
        assert documented[table] == columns, f"{table}: documented columns/types differ from the real ones"


def test_documented_columns_still_exist_in_the_latest_schema(backend: ServerBackend) -> None:
    """Later migrations must not drop or retype what the page documents; what they add and the page
    does not cover yet is reported as a warning (the page says which schema version it covers)."""
    text = DOC.read_text(encoding="utf-8")
    actual = columns_of(backend)
    for table, columns in documented_columns(text).items():
        for column, ctype in columns.items():
            assert actual.get(table, {}).get(column) == ctype, f"{table}.{column} {ctype} is gone or retyped"
    newer = {
        f"{table}.{column}"
        for table, columns in actual.items()
        for column in columns
        if column not in documented_columns(text).get(table, {})
    }
    if newer:
        warnings.warn(
            f"docs/clickhouse.md covers schema version {covered_version(text)}; not documented yet: "
            + ", ".join(sorted(newer)),
            stacklevel=1,
        )


def test_every_example_query_runs_and_answers_what_it_should(backend: ServerBackend) -> None:
    load_data_set(backend)
    blocks = sql_blocks(DOC.read_text(encoding="utf-8"))
    titles = [title for title, _ in blocks]
    assert len(set(titles)) == len(titles), f"example titles must be unique: {titles}"
    # every example has a known answer here: a new example needs its expected rows in EXPECTED
    assert sorted(titles) == sorted(EXPECTED), f"docs examples {titles} vs expected {list(EXPECTED)}"
    for title, sql in blocks:
        names = set(re.findall(r"\{(\w+):", sql))
        assert names <= set(PARAMS), f"{title!r} uses parameters without a test value: {names - set(PARAMS)}"
        rows = backend.query(sql, {n: PARAMS[n] for n in names} or None)
        got = [tuple(plain(v) for v in row) for row in rows]
        if title == "Applied migrations":
            assert all(isinstance(row[2], datetime) for row in got)
            got = [row[:2] for row in got]
        assert got == EXPECTED[title], (title, got)


def test_the_report_code_agrees_with_the_documented_top5(backend: ServerBackend) -> None:
    load_data_set(backend)
    query = TopEventsQuery(
        project="p1", from_=datetime(2026, 1, 1, tzinfo=UTC), to=datetime(2026, 2, 1, tzinfo=UTC)
    )
    report = reports.top_events(backend, query)
    assert report.visitors == 4
    assert [tuple(row.model_dump().values()) for row in report.rows] == TOP5
    projects = reports.projects(backend, ProjectsQuery()).rows
    assert [(p.project, p.last_event_at) for p in projects] == [("p2", at(12, 14)), ("p1", at(12, 13))]
    assert [p.project for p in reports.projects(backend, ProjectsQuery(limit=1)).rows] == ["p2"]
    # a read key's list: among its projects alone, however many other projects are more recent
    assert [p.project for p in reports.projects(backend, ProjectsQuery(limit=1), only={"p1"}).rows] == ["p1"]
    assert reports.projects(backend, ProjectsQuery(), only={"nope"}).rows == []
    assert reports.projects(backend, ProjectsQuery(), only=set()).rows == []
