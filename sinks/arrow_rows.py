"""Column-oriented Arrow tables from our rows: the fastest insert path for both ClickHouse backends.

Each column is built in one pass over the rows, with C-level loops wherever possible: a field is read
for all rows with one ``map`` of an ``itemgetter`` over the rows' ``__dict__``; optional strings go to
Arrow with their ``None``s, which Arrow fills with ``""``; nested lists (experiments, credits) are
flattened once and assembled from offsets; datetimes and decimals, which pyarrow converts with Python
calls per value, are converted once per distinct value; decimals go to Arrow as they are and are
quantized (``ROUND_HALF_EVEN``, the default context, as before) only when pyarrow refuses a value with
more fractional digits than the column. Session and exposure rows come from the processors as
columns (``schemas.rows.ColumnRows``, decision 155): their lists go to Arrow as they are, session times
as epoch ms; objects the processors share between rows (a request's or record's segment, the credit
rows of unattributed conversions) are converted once per object. Nothing is converted at import:
pyarrow's first conversion imports pandas, which the edge (it imports the sink) does not need.
``sinks/test_arrow_rows.py`` checks every table against a plain row-by-row construction.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from decimal import Decimal
from itertools import accumulate, chain
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from schemas.events import Event
from schemas.rows import ColumnRows, Conversion, ExposureRow, SessionRow

_TS = pa.timestamp("ms", tz="UTC")
_DEC = pa.decimal128(18, 4)
_STRS = pa.list_(pa.string())
_Q = Decimal("0.0001")
_CREDIT_Q = Decimal("0.000000001")
_CREDIT = pa.decimal128(18, 9)
_LSTR = pa.list_(pa.string())
_MAP = pa.map_(pa.string(), pa.string())

# How a column's Python values become Arrow, for the columns not stored as they are.
_OR_EMPTY = "or_empty"  # str | None, None -> ""
_TIME = "time"  # datetime | None
_BOOL_INT = "bool_int"  # bool | None stored as an integer (0/1)
_REVENUE = "revenue"  # Decimal | None, 4 decimal places


class _Fields:
    """Reads fields of pydantic rows into columns, with C-level loops: one ``map`` of an ``itemgetter``
    over the rows' ``__dict__`` (where pydantic keeps field values) per column. No tuple per row: the
    allocations would trigger the cyclic garbage collector, which then walks every live row."""

    def __init__(self, columns: dict[str, str]) -> None:  # column -> field name
        self.getters = {column: itemgetter(field) for column, field in columns.items()}

    def read(self, rows: Iterable[Any]) -> dict[str, list[Any]]:
        dicts = list(map(vars, rows))
        return {column: list(map(get, dicts)) for column, get in self.getters.items()}


def events_table(events: Sequence[Event], session_ids: Sequence[str] = ()) -> pa.Table:
    """Raw events; ``session_ids`` (parallel to ``events``) fills ``session_id`` when given."""
    if session_ids and len(session_ids) != len(events):
        raise ValueError(f"{len(session_ids)} session ids for {len(events)} events")
    values = _EVENT_FIELDS.read(events)
    # the events of a request (parser) or of a record (envelope decoder) share their segment object:
    # each distinct one is converted once, then taken by index
    segments, segment_codes = _by_identity(values.pop("segment"))
    offsets, experiments = _flatten(values.pop("experiments"))
    cols = _convert(values, _EVENT_TYPES, _EVENT_HOW)
    for column, array in _convert(_SEGMENT_FIELDS.read(segments), _EVENT_TYPES, _EVENT_HOW).items():
        cols[column] = array.take(segment_codes)
    for column, ids in _EXPERIMENT_FIELDS.read(experiments).items():
        cols[column] = _list(offsets, pa.array(ids, pa.string()), _STRS)
    cols["session_id"] = pa.array(session_ids, pa.string()) if session_ids else pa.repeat("", len(events))
    return pa.Table.from_arrays([cols[n] for n in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)


def conversions_table(rows: Sequence[Conversion]) -> pa.Table:
    values = _CONVERSION_FIELDS.read(rows)
    # conversions without attribution share their credit rows (one tuple per revenue, cached by the
    # conversion stage): each distinct tuple is converted once, then taken by index
    credit_sets, credit_codes = _by_identity(values.pop("credits"))
    offsets, credits = _flatten(credit_sets)
    cols = _convert(values, _CONVERSION_TYPES, _CONVERSION_HOW)
    for column, items in _CREDIT_FIELDS.read(credits).items():
        if column == "credit":
            item_array = _decimals(items, _CREDIT, _CREDIT_Q)
        elif column == "credit_revenue":
            item_array = _decimals(items, _DEC, _Q)
        else:
            item_array = pa.array(items, pa.string())
        cols[column] = _list(offsets, item_array, _CONVERSION_TYPES[column]).take(credit_codes)
    return pa.Table.from_arrays([cols[n] for n in CONVERSION_SCHEMA.names], schema=CONVERSION_SCHEMA)


def sessions_table(rows: Sequence[SessionRow]) -> pa.Table:
    if isinstance(rows, ColumnRows):  # columns from the processors, times as epoch ms
        values = dict(rows.columns)
        times = {n: pa.array(values.pop(n), pa.int64()).cast(_TS) for n in ("started_at", "ended_at")}
        cols = {**_convert(values, _SESSION_TYPES, _SESSION_HOW), **times}
    else:
        cols = _convert(_SESSION_FIELDS.read(rows), _SESSION_TYPES, _SESSION_HOW)
    return pa.Table.from_arrays([cols[n] for n in SESSION_SCHEMA.names], schema=SESSION_SCHEMA)


def exposures_table(rows: Sequence[ExposureRow]) -> pa.Table:
    values = dict(rows.columns) if isinstance(rows, ColumnRows) else _EXPOSURE_FIELDS.read(rows)
    cols = _convert(values, _EXPOSURE_TYPES, _EXPOSURE_HOW)
    return pa.Table.from_arrays([cols[n] for n in EXPOSURE_SCHEMA.names], schema=EXPOSURE_SCHEMA)


# -- column builders ------------------------------------------------------------------------------


def _convert(
    values: dict[str, list[Any]], types: dict[str, pa.DataType], how: dict[str, str]
) -> dict[str, pa.Array]:
    """Arrow arrays of the plain columns in ``values`` (the others are popped before)."""
    cols: dict[str, pa.Array] = {}
    times: dict[str, list[Any]] = {}
    for column, vals in values.items():
        conversion = how.get(column)
        if conversion is None:
            cols[column] = pa.array(vals, types[column])
        elif conversion == _OR_EMPTY:
            arr = pa.array(vals, pa.string())
            cols[column] = pc.fill_null(arr, "") if arr.null_count else arr
        elif conversion == _TIME:
            times[column] = vals
        elif conversion == _BOOL_INT:
            cols[column] = pa.array(vals, pa.bool_()).cast(types[column])
        else:  # _REVENUE
            cols[column] = _decimals(vals, types[column], _Q)
    cols.update(_timestamps(times))
    return cols


def _timestamps(columns: dict[str, list[Any]]) -> dict[str, pa.Array]:
    """pyarrow converts a datetime with several Python calls; a batch holds few distinct times (the
    events of one request share theirs), so each distinct value is converted once, for all columns."""
    return _by_distinct(columns, lambda distinct: pa.array(distinct, _TS))


def _decimals(values: list[Any], type_: pa.Decimal128Type, quantum: Decimal) -> pa.Array:
    """Decimals with ``quantum``'s scale, each distinct value converted once. pyarrow stores a value with
    fewer fractional digits exactly and refuses one that would lose digits; only then are the values
    quantized (rounding half to even). Equal decimals (``1.5 == 1.50``) store the same number."""

    def convert(distinct: list[Decimal | None]) -> pa.Array:
        try:
            return pa.array(distinct, type_)
        except pa.ArrowInvalid:
            return pa.array([None if v is None else v.quantize(quantum) for v in distinct], type_)

    return _by_distinct({"": values}, convert)[""]


def _by_distinct(
    columns: dict[str, list[Any]], convert: Callable[[list[Any]], pa.Array]
) -> dict[str, pa.Array]:
    """``columns`` converted by ``convert`` applied once to their distinct values (then taken by index)."""
    # first-seen order, built by C loops: dict.fromkeys over every value, then a code per distinct value
    # (equal values share one key: the first one seen is converted, e.g. Decimal 1.5 for 1.5 and 1.50)
    seen = dict.fromkeys(chain.from_iterable(columns.values()))
    index: dict[Hashable, int] = {v: i for i, v in enumerate(seen)}
    code = index.__getitem__
    codes = {column: list(map(code, vals)) for column, vals in columns.items()}
    distinct = convert(list(seen))
    return {column: distinct.take(pa.array(c, pa.int32())) for column, c in codes.items()}


def _by_identity(objects: list[Any]) -> tuple[list[Any], pa.Array]:
    """The distinct objects of ``objects`` by identity (first-seen order) and each one's index among
    them, with C-level loops. Equal objects that are not the same object are converted apart (harmless)."""
    ids = list(map(id, objects))
    distinct = dict(zip(ids, objects, strict=True))  # ``objects`` keeps them alive: the ids are unique
    index = {i: n for n, i in enumerate(distinct)}
    return list(distinct.values()), pa.array(list(map(index.__getitem__, ids)), pa.int32())


def _flatten(lists: Sequence[Sequence[Any]]) -> tuple[pa.Array, list[Any]]:
    """List offsets and the concatenated items of ``lists``."""
    offsets = pa.array(list(accumulate(map(len, lists), initial=0)), pa.int32())
    return offsets, list(chain.from_iterable(lists))


def _list(offsets: pa.Array, values: pa.Array, type_: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(offsets, values, type=type_)


EVENT_SCHEMA_FIELDS: list[tuple[str, pa.DataType]] = [
    ("event_id", pa.string()),
    ("type", pa.string()),
    ("received_at", _TS),
    ("occurred_at", _TS),
    ("account_id", pa.string()),
    ("project_id", pa.string()),
    ("visitor_id", pa.string()),
    ("experiment_ids", _STRS),
    ("variation_ids", _STRS),
    ("goal_ids", _STRS),
    ("revenue", _DEC),
    ("currency", pa.string()),
    ("products_count", pa.uint32()),
    ("transaction_id", pa.string()),
    ("seg_browser", pa.string()),
    ("seg_devices", _STRS),
    ("seg_source", pa.string()),
    ("seg_campaign", pa.string()),
    ("seg_returning", pa.uint8()),
    ("seg_country", pa.string()),
    ("seg_custom", _STRS),
    ("client_ip", pa.string()),
    ("user_agent", pa.string()),
    ("source_format", pa.string()),
    ("schema_version", pa.uint16()),
    ("click_id", pa.string()),
    ("link_id", pa.string()),
    ("status", pa.string()),
    ("disable_postbacks", pa.bool_()),
    ("push_hash", pa.string()),
    ("app_id", pa.string()),
    ("device_id", pa.string()),
    ("user_id", pa.string()),
    ("event_name", pa.string()),
    ("attributes", _MAP),
    ("session_id", pa.string()),
]

CONVERSION_SCHEMA_FIELDS: list[tuple[str, pa.DataType]] = [
    ("project_id", pa.string()),
    ("goal_id", pa.string()),
    ("conversion_key", pa.string()),
    ("account_id", pa.string()),
    ("visitor_id", pa.string()),
    ("event_id", pa.string()),
    ("event_type", pa.string()),
    ("occurred_at", _TS),
    ("received_at", _TS),
    ("revenue", _DEC),
    ("currency", pa.string()),
    ("products_count", pa.uint32()),
    ("transaction_id", pa.string()),
    ("experiment_ids", _STRS),
    ("variation_ids", _STRS),
    ("version", pa.uint64()),
    ("status", pa.string()),
    ("status_class", pa.string()),
    ("is_deleted", pa.uint8()),
    ("disable_postbacks", pa.bool_()),
    ("events_merged", pa.uint32()),
    ("attribution_method", pa.string()),
    ("attribution_model", pa.string()),
    ("attributed_touch_id", pa.string()),
    ("attributed_click_id", pa.string()),
    ("attributed_external_click_id", pa.string()),
    ("attributed_link_id", pa.string()),
    ("attributed_campaign", pa.string()),
    ("attributed_push_hash", pa.string()),
    ("attributed_at", _TS),
    ("time_to_convert_ms", pa.int64()),
    ("attribution_window_s", pa.uint32()),
    ("credit_model", _LSTR),
    ("credit_touch_id", _LSTR),
    ("credit_kind", _LSTR),
    ("credit_link_id", _LSTR),
    ("credit_campaign", _LSTR),
    ("credit_push_hash", _LSTR),
    ("credit", pa.list_(_CREDIT)),
    ("credit_revenue", pa.list_(_DEC)),
]

SESSION_SCHEMA_FIELDS: list[tuple[str, pa.DataType]] = [
    ("project_id", pa.string()),
    ("account_id", pa.string()),
    ("visitor_id", pa.string()),
    ("session_id", pa.string()),
    ("started_at", _TS),
    ("ended_at", _TS),
    ("events", pa.uint32()),
    ("is_deleted", pa.uint8()),
    ("version", pa.uint64()),
]

EXPOSURE_SCHEMA_FIELDS: list[tuple[str, pa.DataType]] = [
    ("project_id", pa.string()),
    ("account_id", pa.string()),
    ("experiment_id", pa.string()),
    ("variation_id", pa.string()),
    ("visitor_id", pa.string()),
    ("first_seen_at", _TS),
    ("version", pa.uint64()),
]


EVENT_SCHEMA = pa.schema(EVENT_SCHEMA_FIELDS)
CONVERSION_SCHEMA = pa.schema(CONVERSION_SCHEMA_FIELDS)
SESSION_SCHEMA = pa.schema(SESSION_SCHEMA_FIELDS)
EXPOSURE_SCHEMA = pa.schema(EXPOSURE_SCHEMA_FIELDS)
_EVENT_TYPES = dict(EVENT_SCHEMA_FIELDS)
_CONVERSION_TYPES = dict(CONVERSION_SCHEMA_FIELDS)
_SESSION_TYPES = dict(SESSION_SCHEMA_FIELDS)
_EXPOSURE_TYPES = dict(EXPOSURE_SCHEMA_FIELDS)

_SEGMENT_COLUMNS = {
    "seg_browser": "browser",
    "seg_devices": "devices",
    "seg_source": "source",
    "seg_campaign": "campaign",
    "seg_returning": "returning",
    "seg_country": "country",
    "seg_custom": "custom",
}
_EVENT_OTHER = {"experiment_ids", "variation_ids", "session_id", "schema_version", *_SEGMENT_COLUMNS}
_EVENT_FIELDS = _Fields(
    {
        **{n: n for n, _ in EVENT_SCHEMA_FIELDS if n not in _EVENT_OTHER},
        "schema_version": "v",
        "segment": "segment",
        "experiments": "experiments",
    }
)
_SEGMENT_FIELDS = _Fields(_SEGMENT_COLUMNS)
_EXPERIMENT_FIELDS = _Fields({"experiment_ids": "experiment_id", "variation_ids": "variation_id"})
_EVENT_HOW = {
    "received_at": _TIME,
    "occurred_at": _TIME,
    "revenue": _REVENUE,
    "seg_returning": _BOOL_INT,
    **{
        n: _OR_EMPTY
        for n in (
            "currency",
            "transaction_id",
            "seg_browser",
            "seg_source",
            "seg_campaign",
            "seg_country",
            "client_ip",
            "user_agent",
            "click_id",
            "link_id",
            "status",
            "push_hash",
            "app_id",
            "device_id",
            "user_id",
            "event_name",
        )
    },
}

_CREDIT_COLUMNS = {
    "credit_model": "model",
    "credit_touch_id": "touch_id",
    "credit_kind": "kind",
    "credit_link_id": "link_id",
    "credit_campaign": "campaign",
    "credit_push_hash": "push_hash",
    "credit": "credit",
    "credit_revenue": "revenue",
}
_CONVERSION_FIELDS = _Fields(
    {**{n: n for n, _ in CONVERSION_SCHEMA_FIELDS if n not in _CREDIT_COLUMNS}, "credits": "credits"}
)
_CREDIT_FIELDS = _Fields(_CREDIT_COLUMNS)
_CONVERSION_HOW = {
    "occurred_at": _TIME,
    "received_at": _TIME,
    "attributed_at": _TIME,
    "revenue": _REVENUE,
    "is_deleted": _BOOL_INT,
}

_SESSION_FIELDS = _Fields({n: n for n, _ in SESSION_SCHEMA_FIELDS})
_SESSION_HOW = {"started_at": _TIME, "ended_at": _TIME, "is_deleted": _BOOL_INT}
_EXPOSURE_FIELDS = _Fields({n: n for n, _ in EXPOSURE_SCHEMA_FIELDS})
_EXPOSURE_HOW = {"first_seen_at": _TIME}
