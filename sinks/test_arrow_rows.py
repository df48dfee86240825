"""The column-wise Arrow builders of ``sinks.arrow_rows`` give exactly the table of a plain row-by-row
construction (one Python list per column, filled row by row, then ``pa.array`` with the column type)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Event, EventType, ExperimentVariation, Segment
from schemas.rows import Conversion, Credit, ExposureColumns, ExposureRow, SessionColumns, SessionRow
from sinks.arrow_rows import (
    CONVERSION_SCHEMA_FIELDS,
    EVENT_SCHEMA_FIELDS,
    EXPOSURE_SCHEMA_FIELDS,
    SESSION_SCHEMA_FIELDS,
    conversions_table,
    events_table,
    exposures_table,
    sessions_table,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# -- the reference: row by row, every value converted on its own ----------------------------------


def _q(v: Decimal | None, places: int) -> Decimal | None:
    return None if v is None else v.quantize(Decimal(1).scaleb(-places))


def _table(fields: list[tuple[str, pa.DataType]], rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({n: pa.array([r[n] for r in rows], type=t) for n, t in fields})


def ref_events(events: Sequence[Event], session_ids: Sequence[str] = ()) -> pa.Table:
    rows = []
    for i, e in enumerate(events):
        s = e.segment
        rows.append(
            {
                "event_id": e.event_id,
                "type": e.type.value,
                "received_at": e.received_at,
                "occurred_at": e.occurred_at,
                "account_id": e.account_id,
                "project_id": e.project_id,
                "visitor_id": e.visitor_id,
                "experiment_ids": [x.experiment_id for x in e.experiments],
                "variation_ids": [x.variation_id for x in e.experiments],
                "goal_ids": list(e.goal_ids),
                "revenue": _q(e.revenue, 4),
                "currency": e.currency or "",
                "products_count": e.products_count,
                "transaction_id": e.transaction_id or "",
                "seg_browser": s.browser or "",
                "seg_devices": list(s.devices),
                "seg_source": s.source or "",
                "seg_campaign": s.campaign or "",
                "seg_returning": None if s.returning is None else int(s.returning),
                "seg_country": s.country or "",
                "seg_custom": list(s.custom),
                "client_ip": e.client_ip or "",
                "user_agent": e.user_agent or "",
                "source_format": e.source_format,
                "schema_version": e.v,
                "click_id": e.click_id or "",
                "link_id": e.link_id or "",
                "status": e.status or "",
                "disable_postbacks": e.disable_postbacks,
                "push_hash": e.push_hash or "",
                "app_id": e.app_id or "",
                "device_id": e.device_id or "",
                "user_id": e.user_id or "",
                "event_name": e.event_name or "",
                "attributes": list(e.attributes.items()),
                "session_id": session_ids[i] if session_ids else "",
            }
        )
    return _table(EVENT_SCHEMA_FIELDS, rows)


def ref_conversions(conversions: Sequence[Conversion]) -> pa.Table:
    rows = []
    for c in conversions:
        row: dict[str, Any] = {
            n: getattr(c, n) for n, _ in CONVERSION_SCHEMA_FIELDS if not n.startswith("credit")
        }
        row["revenue"] = _q(c.revenue, 4)
        row["experiment_ids"] = list(c.experiment_ids)
        row["variation_ids"] = list(c.variation_ids)
        row["is_deleted"] = int(c.is_deleted)
        for attr in ("model", "touch_id", "kind", "link_id", "campaign", "push_hash"):
            row[f"credit_{attr}"] = [getattr(x, attr) for x in c.credits]
        row["credit"] = [_q(x.credit, 9) for x in c.credits]
        row["credit_revenue"] = [_q(x.revenue, 4) for x in c.credits]
        rows.append(row)
    return _table(CONVERSION_SCHEMA_FIELDS, rows)


def ref_plain(fields: list[tuple[str, pa.DataType]], items: Sequence[Any]) -> pa.Table:
    rows = []
    for r in items:
        values = {n: getattr(r, n) for n, _ in fields}
        rows.append({n: int(v) if isinstance(v, bool) else v for n, v in values.items()})
    return _table(fields, rows)


# -- varied rows -------------------------------------------------------------------------------------

texts = st.text(max_size=12)  # unicode, "" included
opt_texts = st.none() | texts
short_lists = st.lists(texts, max_size=3).map(tuple)
zones = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-9, minutes=-30))]
)
# a few distinct instants shared by many rows (as in real batches), microseconds and pre-1970 included
instants = st.sampled_from(
    [
        dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 5, 12, 0, 0, 999_999, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=dt.UTC),
        dt.datetime(2000, 2, 29, 1, 2, 3, 4_000, tzinfo=dt.UTC),
    ]
)
times = (
    instants
    | st.builds(
        lambda d, z: d.replace(tzinfo=z),
        st.datetimes(min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2100, 1, 1)),
        zones,
    )
    | st.datetimes(min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2100, 1, 1))
)  # naive: taken as UTC


def decimals(int_digits: int, max_places: int) -> st.SearchStrategy[Decimal]:
    """Finite decimals that fit ``int_digits`` integer digits, with 0..``max_places`` fractional digits
    (more than the column's scale: those are rounded, half to even), and a few odd spellings."""
    limit = 10**int_digits - 1
    plain = st.builds(
        lambda units, places: Decimal(units).scaleb(-places),
        st.integers(-limit, limit),
        st.integers(0, max_places),
    ).filter(lambda d: abs(d) < 10 ** (int_digits - 1))
    odd = st.sampled_from(
        [Decimal("-0"), Decimal("0E-12"), Decimal("1E+3"), Decimal("12.50000000000"), Decimal("0.00005")]
    )
    return plain | odd


segments = st.builds(
    Segment,
    browser=opt_texts,
    devices=short_lists,
    source=opt_texts,
    campaign=opt_texts,
    returning=st.none() | st.booleans(),
    country=opt_texts,
    custom=short_lists,
)
experiments = st.lists(
    st.builds(ExperimentVariation, experiment_id=texts, variation_id=texts), max_size=3
).map(tuple)
events = st.builds(
    Event,
    event_id=texts,
    type=st.sampled_from(list(EventType)),
    received_at=times,
    occurred_at=times,
    account_id=texts,
    project_id=texts,
    visitor_id=texts,
    experiments=experiments,
    goal_ids=short_lists,
    revenue=st.none() | decimals(13, 10),
    currency=opt_texts,
    products_count=st.none() | st.integers(0, 2**32 - 1),
    transaction_id=opt_texts,
    segment=segments,
    client_ip=opt_texts,
    user_agent=opt_texts,
    source_format=texts,
    click_id=opt_texts,
    link_id=opt_texts,
    status=opt_texts,
    disable_postbacks=st.booleans(),
    push_hash=opt_texts,
    app_id=opt_texts,
    device_id=opt_texts,
    user_id=opt_texts,
    event_name=opt_texts,
    attributes=st.dictionaries(texts, texts, max_size=3),
)
credits = st.builds(
    Credit,
    model=texts,
    touch_id=texts,
    kind=texts,
    link_id=texts,
    campaign=texts,
    push_hash=texts,
    credit=decimals(8, 14),
    revenue=decimals(13, 8),
)
conversions = st.builds(
    Conversion,
    project_id=texts,
    goal_id=texts,
    conversion_key=texts,
    account_id=texts,
    visitor_id=texts,
    event_id=texts,
    event_type=texts,
    occurred_at=times,
    received_at=times,
    revenue=decimals(13, 10),
    currency=texts,
    products_count=st.integers(0, 2**32 - 1),
    transaction_id=texts,
    experiment_ids=short_lists,
    variation_ids=short_lists,
    version=st.integers(0, 2**64 - 1),
    status=texts,
    status_class=texts,
    is_deleted=st.booleans(),
    disable_postbacks=st.booleans(),
    events_merged=st.integers(0, 2**32 - 1),
    attribution_method=texts,
    attribution_model=texts,
    attributed_touch_id=texts,
    attributed_external_click_id=texts,
    attributed_at=st.none() | times,
    time_to_convert_ms=st.none() | st.integers(-(2**63), 2**63 - 1),
    attribution_window_s=st.integers(0, 2**32 - 1),
    credits=st.lists(credits, max_size=4).map(tuple),
)
sessions = st.builds(
    SessionRow,
    project_id=texts,
    account_id=texts,
    visitor_id=texts,
    session_id=texts,
    started_at=times,
    ended_at=times,
    events=st.integers(0, 2**32 - 1),
    is_deleted=st.booleans(),
    version=st.integers(0, 2**64 - 1),
)
exposures = st.builds(
    ExposureRow,
    project_id=texts,
    account_id=texts,
    experiment_id=texts,
    variation_id=texts,
    visitor_id=texts,
    first_seen_at=times,
    version=st.integers(0, 2**64 - 1),
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(built: pa.Table, reference: pa.Table) -> None:
    assert built.schema.equals(reference.schema, check_metadata=True)
    assert built.equals(reference)
    assert built.to_pylist() == reference.to_pylist()


@FAST
@given(st.lists(events, max_size=12), st.booleans())
def test_events_table_matches_reference(rows: list[Event], with_sessions: bool) -> None:
    session_ids = [f"s{i}-é" for i in range(len(rows))] if with_sessions else []
    assert_same(events_table(rows, session_ids), ref_events(rows, session_ids))


@FAST
@given(st.lists(conversions, max_size=8))
def test_conversions_table_matches_reference(rows: list[Conversion]) -> None:
    assert_same(conversions_table(rows), ref_conversions(rows))


@FAST
@given(st.lists(conversions, min_size=1, max_size=6), st.lists(st.integers(0, 5), max_size=12))
def test_conversions_sharing_credit_rows_match_reference(rows: list[Conversion], picks: list[int]) -> None:
    # the conversion stage hands the same credits tuple to every unattributed conversion of a revenue
    shared = [rows[-1].model_copy(update={"credits": rows[p % len(rows)].credits}) for p in picks]
    assert_same(conversions_table(rows + shared), ref_conversions(rows + shared))


@FAST
@given(st.lists(sessions, max_size=8), st.lists(exposures, max_size=8))
def test_sessions_and_exposures_tables_match_reference(
    session_rows: list[SessionRow], exposure_rows: list[ExposureRow]
) -> None:
    assert_same(sessions_table(session_rows), ref_plain(SESSION_SCHEMA_FIELDS, session_rows))
    assert_same(exposures_table(exposure_rows), ref_plain(EXPOSURE_SCHEMA_FIELDS, exposure_rows))


# -- rows as columns from the processors (decision 155) ------------------------------------------

ms_times = st.integers(-631152000000, 4102444800000)  # 1950 .. 2100, epoch milliseconds
session_values = st.tuples(
    texts, texts, texts, texts, ms_times, ms_times, st.integers(0, 2**32 - 1), st.booleans(),
    st.integers(0, 2**64 - 1),
)  # fmt: skip
exposure_values = st.tuples(texts, texts, texts, texts, texts, times, st.integers(0, 2**64 - 1))


def _latest_by_dict(rows: Sequence[Any], key: Callable[[Any], tuple[Any, ...]]) -> list[Any]:
    """What StageOutput.batch() kept before the columns: one row per key, highest version (ties: later)."""
    best: dict[tuple[Any, ...], Any] = {}
    for r in rows:
        k = key(r)
        if k not in best or r.version >= best[k].version:
            best[k] = r
    return list(best.values())


@FAST
@given(st.lists(session_values, max_size=10), st.lists(exposure_values, max_size=10), st.booleans())
def test_column_rows_give_the_tables_and_rows_of_the_row_objects(
    session_rows: list[tuple[Any, ...]], exposure_rows: list[tuple[Any, ...]], repeat_keys: bool
) -> None:
    if repeat_keys:  # the same keys again with other versions: latest() keeps one row per key
        session_rows += [(*r[:4], *r[4:8], r[8] // 2) for r in session_rows]
        exposure_rows += [(*r[:6], r[6] // 3) for r in exposure_rows]
    sessions = SessionColumns()
    for r in session_rows:
        sessions.add(*r)
    exposures = ExposureColumns()
    for r in exposure_rows:
        exposures.add(*r)
    assert len(sessions) == len(session_rows) and len(exposures) == len(exposure_rows)
    # the rows: validated models equal to the values (session times from epoch ms)
    expected_sessions = [
        SessionRow(
            project_id=p, account_id=a, visitor_id=v, session_id=s,
            started_at=dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=t0),
            ended_at=dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=t1),
            events=n, is_deleted=d, version=ver,
        )
        for p, a, v, s, t0, t1, n, d, ver in session_rows
    ]  # fmt: skip
    fields = [n for n, _ in EXPOSURE_SCHEMA_FIELDS]
    expected_exposures = [ExposureRow(**dict(zip(fields, r, strict=True))) for r in exposure_rows]
    assert list(sessions) == expected_sessions and list(exposures) == expected_exposures
    # one row per key as a dict kept it, then the same tables as the row objects give
    latest_sessions, latest_exposures = sessions.latest(), exposures.latest()
    assert list(latest_sessions) == _latest_by_dict(
        expected_sessions, lambda r: (r.project_id, r.visitor_id, r.session_id)
    )
    assert list(latest_exposures) == _latest_by_dict(
        expected_exposures, lambda r: (r.project_id, r.experiment_id, r.variation_id, r.visitor_id)
    )
    checks: list[tuple[Any, Callable[[Any], pa.Table], list[tuple[str, pa.DataType]]]] = [
        (latest_sessions, sessions_table, SESSION_SCHEMA_FIELDS),
        (latest_exposures, exposures_table, EXPOSURE_SCHEMA_FIELDS),
    ]
    for columns, build, schema in checks:
        rows = tuple(columns)
        fresh = type(columns)(columns.columns)  # no rows built yet: the table comes from the columns
        assert_same(build(fresh), build(rows))
        assert_same(build(fresh), ref_plain(schema, rows))


def test_decimals_are_rounded_half_to_even_to_the_column_scale() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    base = dict(received_at=t0, occurred_at=t0, account_id="a", project_id="p", visitor_id="v")
    revenues = [Decimal("1.00005"), Decimal("1.00015"), Decimal("-2.123456789"), Decimal("7"), None]
    rows = [
        Event(event_id=str(i), type=EventType.TRANSACTION, revenue=r, **base) for i, r in enumerate(revenues)
    ]
    table = events_table(rows)
    assert table.column("revenue").to_pylist() == [
        Decimal("1.0000"),
        Decimal("1.0002"),
        Decimal("-2.1235"),
        Decimal("7.0000"),
        None,
    ]
    assert_same(table, ref_events(rows))


def test_conversions_carry_the_external_click_id_of_their_click() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    base: dict[str, Any] = dict(
        project_id="p",
        goal_id="g",
        account_id="a",
        visitor_id="v",
        event_type="postback",
        occurred_at=t0,
        received_at=t0,
        revenue=Decimal(0),
        currency="",
        products_count=0,
        transaction_id="",
        experiment_ids=(),
        variation_ids=(),
        version=1,
    )
    rows = [
        Conversion(conversion_key="k1", event_id="e1", attributed_external_click_id="TS-1", **base),
        Conversion(conversion_key="k2", event_id="e2", **base),  # none: ""
    ]
    table = conversions_table(rows)
    assert table.schema.field("attributed_external_click_id").type == pa.string()
    assert table.column("attributed_external_click_id").to_pylist() == ["TS-1", ""]
    assert_same(table, ref_conversions(rows))


def test_events_and_their_session_ids_must_pair_up() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    e = Event(
        event_id="e",
        type=EventType.VIEW_EXP,
        received_at=t0,
        occurred_at=t0,
        account_id="a",
        project_id="p",
        visitor_id="v",
    )
    with pytest.raises(ValueError, match="2 session ids for 1 events"):
        events_table([e], ["s1", "s2"])


@pytest.mark.parametrize(
    ("build", "reference"),
    [
        (events_table, ref_events),
        (conversions_table, ref_conversions),
        (sessions_table, lambda rows: ref_plain(SESSION_SCHEMA_FIELDS, rows)),
        (exposures_table, lambda rows: ref_plain(EXPOSURE_SCHEMA_FIELDS, rows)),
    ],
)
def test_no_rows_gives_an_empty_table_with_the_schema(
    build: Callable[[list[Any]], pa.Table], reference: Callable[[list[Any]], pa.Table]
) -> None:
    table = build([])
    assert table.num_rows == 0
    assert_same(table, reference([]))


def test_importing_the_sink_does_not_load_pandas() -> None:
    # The edge imports the sink (trackpipe/distributed.py) without writing: pandas (+~47 MB, ~1 s) would
    # be loaded by pyarrow's first Python-to-Arrow conversion, so none may run at import time.
    code = "import sys, sinks.clickhouse_sink; print('pandas' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "False"
