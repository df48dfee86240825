"""The ``/track`` hot path: a Convert payload's events written as canonical JSON without building models.

:func:`convert_payload_records` validates a decoded payload on the fast path of
:mod:`ingest.formats.convert_tracking` (falling back to its pydantic wire models for anything unusual) and
writes each event's JSON byte for byte as ``Event.__pydantic_serializer__.to_json`` would. The layout is
checked against the model at import: if it ever stops matching (a reordered or new ``Event`` field) the
edge serializes from the models instead, says so loudly in the log, and ``/metrics`` shows it
(``trackpipe_edge_convert_fast_layout_exact`` 0; ``trackpipe_edge_convert_requests_total{path}`` counts
the requests each path served). ``test_convert_fast.py`` holds the parity tests.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from pydantic_core import to_json

from ingest.errors import too_large
from ingest.formats.context import RequestContext
from ingest.formats.convert_tracking import (
    _EVT_TYPES,
    _SEGMENT_FIELDS,
    _SLOW,
    ConvertRecords,
    NormEvent,
    SegKey,
    _events,
    _fast_event,
    _fast_id,
    _fast_segment,
    _fast_visitor_events,
    _new_segment,
    _normalize,
    _Normalized,
    _Slow,
)
from schemas.events import Event, EventType
from schemas.ids import new_event_ids
from schemas.jsonbytes import trimmed

log = logging.getLogger(__name__)

#: Requests served per path: ``fast`` (checked and written here), ``reference`` (the wire models decided:
#: an unusual payload, or every payload if the layout stopped matching).
PATHS: Counter[str] = Counter()

# --- canonical JSON without the models ----------------------------------------------------------------
#
# An Event of this endpoint serializes as
#   {"v":1,"event_id":ID,"type":T,"received_at":R,"occurred_at":R,"account_id":A,"project_id":P,
#    "visitor_id":V,"experiments":X,"goal_ids":G,"revenue":M,"currency":null,"products_count":N,
#    "transaction_id":I,"segment":S,"client_ip":C,"user_agent":U,"source_format":F<defaults>}
# Every value is written by pydantic-core's own serializer (``to_json``), so strings are escaped exactly
# as in the model; the layout is checked against the model at import (``LAYOUT_EXACT``) and, if it ever
# stops matching (a reordered or new field), the events are serialized from models instead.

# Memos are bounded in entries and in the size of what they keep (cleared when full), so a client sending
# ever new values costs at most a few tens of MB.
_JSON_CACHE_MAX = 20_000
_json_cache: dict[object, bytes] = {}


def _js(value: str) -> bytes:
    """JSON of a str, memoized (ids, user agents, client addresses repeat across requests)."""
    out = _json_cache.get(value)
    if out is None:
        out = to_json(value)
        if len(value) <= 256:
            if len(_json_cache) >= _JSON_CACHE_MAX:
                _json_cache.clear()
            _json_cache[value] = out
    return out


def _segment_json(key: SegKey) -> bytes:
    seg = _new_segment(dict(zip(_SEGMENT_FIELDS, key, strict=True)))
    return seg.__pydantic_serializer__.to_json(seg)


def _ids_json(ids: tuple[str, ...]) -> bytes:
    if not ids:
        return b"[]"
    return b"[" + b",".join([_js(i) for i in ids]) + b"]"


def _pair_json(e: str, v: str) -> bytes:
    key = (e, v)
    out = _json_cache.get(key)
    if out is None:
        if len(_json_cache) >= _JSON_CACHE_MAX:
            _json_cache.clear()
        out = _json_cache[key] = b'{"experiment_id":' + _js(e) + b',"variation_id":' + _js(v) + b"}"
    return out


_TYPE_JSON = {evt: b'","type":"' + t.value.encode() + b'","received_at":' for evt, t in _EVT_TYPES.items()}
_HEAD = b'{"v":1,"event_id":"'
_PLAIN = b',"goal_ids":[],"revenue":null,"currency":null,"products_count":null,"transaction_id":null'


def _event_json(ev: NormEvent) -> tuple[bytes, bytes]:
    """The parts of one event's JSON that depend on the event itself: from ``"type"`` to ``"received_at":``
    and from the experiments' value to the transaction id's value."""
    evt, exps, vars_, goals, r, prc, tid = ev
    if exps:
        x = b"[" + b",".join([_pair_json(e, v) for e, v in zip(exps, vars_, strict=True)]) + b"]"
    else:
        x = b"[]"
    if not goals and r is None and prc is None and tid is None:
        return _TYPE_JSON[evt], x + _PLAIN
    return _TYPE_JSON[evt], b"".join(
        (
            x,
            b',"goal_ids":',
            _ids_json(goals),
            b',"revenue":',
            b"null" if r is None else to_json(r),
            b',"currency":null,"products_count":',
            b"null" if prc is None else b"%d" % prc,
            b',"transaction_id":',
            b"null" if tid is None else to_json(tid),
        )
    )


def _tail_after_source_format() -> bytes:
    """Everything after ``"source_format":F`` in an Event's JSON: the defaults of the fields below it."""
    marker = "trackpipe-layout-probe"
    probe = Event(
        event_id="x",
        type=EventType.VIEW_EXP,
        received_at=datetime(2000, 1, 1, tzinfo=UTC),
        occurred_at=datetime(2000, 1, 1, tzinfo=UTC),
        account_id="a",
        project_id="p",
        visitor_id="v",
        source_format=marker,
    )
    blob = probe.__pydantic_serializer__.to_json(probe)
    return blob.split(b'"source_format":"' + marker.encode() + b'"', 1)[-1]


_TAIL = _tail_after_source_format()


# Per (account, project) and per source format: the bytes around them never change (bounded like _js's).
_account_json: dict[tuple[str, str], bytes] = {}
_format_tail: dict[str, bytes] = {}


def _request_json(
    account: str, project: str, visitor: str, segment: bytes, ctx: RequestContext, source_format: str
) -> tuple[bytes, bytes]:
    """The parts shared by a request's events: from ``"received_at"``'s value to ``"experiments":``, and
    from ``,"segment"`` to the end."""
    at = to_json(ctx.received_at)
    ids = _account_json.get((account, project))
    if ids is None:
        ids = b"".join((b',"account_id":', _js(account), b',"project_id":', _js(project), b',"visitor_id":'))
        if len(account) + len(project) <= 256:
            if len(_account_json) >= _JSON_CACHE_MAX:
                _account_json.clear()
            _account_json[(account, project)] = ids
    end = _format_tail.get(source_format)
    if end is None:
        end = _format_tail[source_format] = b',"source_format":' + _js(source_format) + _TAIL
    ip = ctx.client_ip
    common = b"".join((at, b',"occurred_at":', at, ids, to_json(visitor), b',"experiments":'))
    tail = b"".join(
        (
            b',"segment":',
            segment,
            b',"client_ip":',
            b"null" if ip is None else _js(ip),
            b',"user_agent":',
            _js(ctx.user_agent),
            end,
        )
    )
    return common, tail


def _blobs(norm: _Normalized, ctx: RequestContext, source_format: str, ids: list[str]) -> list[bytes]:
    if not LAYOUT_EXACT:
        return [e.__pydantic_serializer__.to_json(e) for e in _events(norm, ctx, source_format, ids)]
    common, tail = _request_json(
        norm.account_id, norm.project_id, norm.visitor_id, _segment_json(norm.segment), ctx, source_format
    )
    out: list[bytes] = []
    for event_id, ev in zip(ids, norm.events, strict=True):
        head, middle = _event_json(ev)
        out.append(b"".join((_HEAD, event_id.encode(), head, common, middle, tail)))
    return out


# Memos of the fast path, keyed by the orjson encoding of the wire value (injective on decoded JSON):
# the same event ({"evt":"viewExp","exps":[7],"vars":[70]}) or segment arrives again and again.
_EVENT_MEMO_MAX = 10_000
_SEGMENT_MEMO_MAX = 8_192
_MEMO_KEY_MAX = 1024  # bytes of a wire event / segment worth remembering
_event_memo: dict[bytes, tuple[bytes, bytes]] = {}
_segment_memo: dict[bytes, bytes] = {}


def _fast_segment_json(seg: object) -> bytes:
    try:
        key = orjson.dumps(seg)
    except orjson.JSONEncodeError:
        raise _SLOW from None
    out = _segment_memo.get(key)
    if out is None:
        out = _segment_json(_fast_segment(seg))
        if len(key) <= _MEMO_KEY_MAX:
            if len(_segment_memo) >= _SEGMENT_MEMO_MAX:
                _segment_memo.clear()
            _segment_memo[trimmed(key)] = out  # kept: not orjson's ~4 kB buffer
    return out


def _fast_records(data: dict[str, Any], ctx: RequestContext, source_format: str) -> ConvertRecords:
    """Validate and write a plain payload in one pass; raises ``_Slow`` when the wire models must decide."""
    get = data.get
    vid, ev = _fast_visitor_events(data)
    account, project = _fast_id(get("cid")), _fast_id(get("pid"))
    common, tail = _request_json(account, project, vid, _fast_segment_json(get("seg")), ctx, source_format)
    memo = _event_memo
    dumps = orjson.dumps
    ids = new_event_ids(len(ev))
    out: list[bytes] = []
    append = out.append
    for event_id, w in zip(ids, ev, strict=True):
        try:
            key = dumps(w)
        except orjson.JSONEncodeError:
            raise _SLOW from None
        parts = memo.get(key)
        if parts is None:
            parts = _event_json(_fast_event(w))
            # transaction ids are unique: not worth remembering
            if len(key) <= _MEMO_KEY_MAX and w.get("tid") is None:
                if len(memo) >= _EVENT_MEMO_MAX:
                    memo.clear()
                memo[trimmed(key)] = parts
        append(b"".join((_HEAD, event_id.encode(), parts[0], common, parts[1], tail)))
    return ConvertRecords(vid, ids, out)


def _layout_matches() -> bool:
    """Whether :func:`_blobs` writes exactly what the Event model serializes (a probe with every field of
    this endpoint set)."""
    norm = _Normalized(
        "a\u00e9",
        "p",
        'v"\\',
        ("CH", ("DESK", "MOB"), "direct", "c", True, "RO", ("1", "x")),
        [
            ("viewExp", ("1", "e"), ("2", "v"), (), None, None, None),
            ("tr", ("1",), ("2",), ("7", "g"), Decimal("12.50"), 3, "t-1"),
            ("hitGoal", (), (), ("7",), None, None, None),
        ],
    )
    ctx = RequestContext(
        received_at=datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=UTC), client_ip=None, user_agent="u"
    )
    ids = [
        "0190d8a0-0000-7000-8000-000000000000",
        "0190d8a0-0000-7001-8000-000000000000",
        "0190d8a0-0000-7002-8000-000000000000",
    ]
    expected = [e.__pydantic_serializer__.to_json(e) for e in _events(norm, ctx, "convert_json", ids)]
    return _blobs(norm, ctx, "convert_json", ids) == expected


LAYOUT_EXACT = True
LAYOUT_EXACT = _layout_matches()
if not LAYOUT_EXACT:
    log.error(
        "the canonical Event JSON layout changed: /track serializes every event from the models (slower) "
        "until ingest/formats/convert_fast.py is updated; see trackpipe_edge_convert_fast_layout_exact"
    )


def convert_payload_records(
    data: Any, ctx: RequestContext, *, source_format: str, max_events: int
) -> ConvertRecords:
    """Validate a decoded JSON/bracket payload and write its canonical events as JSON: what
    :func:`parse_convert_payload` would give, serialized, without building the models."""
    if type(data) is dict and LAYOUT_EXACT:
        ev = data.get("ev")
        if type(ev) is list and len(ev) > max_events:
            raise too_large(f"request carries {len(ev)} events; at most {max_events} per request")
        try:
            records = _fast_records(data, ctx, source_format)
        except _Slow:
            pass
        else:
            PATHS["fast"] += 1
            return records
    norm = _normalize(data, max_events)
    PATHS["reference"] += 1
    ids = new_event_ids(len(norm.events))
    return ConvertRecords(norm.visitor_id, ids, _blobs(norm, ctx, source_format, ids))
