"""Convert Experiences tracking on ``/track``: JSON POST, bracket-query GET and the legacy push."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from aiohttp import web

from ingest.errors import bad_request
from ingest.formats.context import RequestContext
from ingest.formats.convert_fast import convert_payload_records
from ingest.formats.convert_legacy import is_legacy_query, parse_legacy_query
from ingest.formats.convert_tracking import ConvertRecords, WireTrack
from ingest.formats.phpquery import parse_bracket_query
from ingest.http.answers import Accepted
from ingest.http.api import Answer, Body, Endpoint, Param
from ingest.http.common import CONFIG, METRICS, SENDER, json_response
from ingest.http.forwarding import client_ip
from ingest.http.headers import header_text
from schemas.events import Event


def request_context(request: web.Request) -> RequestContext:
    ua = header_text(request, "User-Agent")
    if not ua:
        raise bad_request("missing_user_agent", "a User-Agent header with a value is required")
    return RequestContext(received_at=datetime.now(UTC), client_ip=client_ip(request), user_agent=ua)


async def accept(request: web.Request, events: list[Event], fmt: str) -> None:
    """Hand events to the sender; returns once they are durable."""
    await request.app[SENDER].submit(events)
    request.app[METRICS].accepted_events(fmt, len(events))


async def _answer(request: web.Request, events: list[Event], fmt: str) -> web.Response:
    await accept(request, events, fmt)
    return json_response({"status": "ok", "accepted": len(events), "event_ids": [e.event_id for e in events]})


def accepted_body(event_ids: list[str]) -> bytes:
    """``{"status":"ok","accepted":N,"event_ids":[...]}`` as ``orjson.dumps`` writes it, for ids of our own
    (:mod:`schemas.ids`: hex digits and dashes, nothing to escape)."""
    if not event_ids:
        return b'{"status":"ok","accepted":0,"event_ids":[]}'
    return b'{"status":"ok","accepted":%d,"event_ids":["%s"]}' % (
        len(event_ids),
        '","'.join(event_ids).encode(),
    )


def _accepted(app: web.Application, recs: ConvertRecords, fmt: str) -> web.Response:
    """The 2xx for ``recs``, once the handler's own ``submit_serialized`` returned (awaited in the handler:
    no coroutine of its own per request on the hot path)."""
    app[METRICS].accepted_events(fmt, len(recs.blobs))
    return web.Response(body=accepted_body(recs.event_ids), content_type="application/json")


async def track_post(request: web.Request) -> web.Response:
    ctx = request_context(request)
    app = request.app
    cfg = app[CONFIG]
    raw = await request.read()
    if not raw:
        raise bad_request("invalid_body", "empty body: a JSON object with cid, pid, vid and ev is expected")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request("invalid_json", f"body is not valid JSON: {exc}") from None
    recs = convert_payload_records(
        data, ctx, source_format="convert_json", max_events=cfg.max_events_per_request
    )
    await app[SENDER].submit_serialized(recs.visitor_id, recs.blobs)
    return _accepted(app, recs, "convert_json")


async def track_get(request: web.Request) -> web.Response:
    ctx = request_context(request)
    cfg = request.app[CONFIG]
    query = request.rel_url.query
    if is_legacy_query(query):
        return await _answer(request, parse_legacy_query(query, ctx), "convert_legacy")
    if len(query) > 20 * cfg.max_events_per_request:
        raise bad_request("invalid_query", "too many query parameters")
    data = parse_bracket_query(query.items())
    recs = convert_payload_records(
        data, ctx, source_format="convert_query", max_events=cfg.max_events_per_request
    )
    await request.app[SENDER].submit_serialized(recs.visitor_id, recs.blobs)
    return _accepted(request.app, recs, "convert_query")


USER_AGENT = Param(
    "User-Agent", "required by the Convert formats", {"type": "string", "minLength": 1}, True, "header"
)
DURABLE = Answer(200, "durable: stored (fsynced / acknowledged by Kafka)", Accepted)


def _wire_param(name: str, style: str | None = None) -> Param:
    """A field of WireTrack as a query parameter of the bracket form (its schema is the model's)."""
    schema = WireTrack.model_json_schema(ref_template="#/components/schemas/{model}")
    sub = schema["properties"][name]
    text = "PHP bracket notation, e.g. seg[devices][]=DESK, ev[0][evt]=hitGoal" if style else "Convert"
    return Param(name, f"bracket form: {name} of the JSON body ({text})", sub, style=style)  # type: ignore[arg-type]


#: GET /track: the new tracking structure as a bracket query (the WireTrack fields), or the legacy push.
TRACK_QUERY = (
    USER_AGENT,
    _wire_param("cid"),
    _wire_param("pid"),
    _wire_param("seg", "deepObject"),
    _wire_param("ev", "deepObject"),
    Param("vid", "visitor id (bracket form: required; legacy push: optional extension)"),
    Param("c", "legacy push: account id"),
    Param("p", "legacy push: project id"),
    Param("e", "legacy push: EXPERIMENT-VARIATION[,...]"),
    Param("g", "legacy push: goal ids, comma-separated"),
    Param("ga", "legacy push: number of goals in g"),
    Param("t", "legacy push: GOAL[.GOAL]|TRANSACTION_ID|VALUE|PRODUCTS_COUNT"),
)
PATHS = ("/track", "/track/")
ENDPOINTS = (
    Endpoint(
        "POST",
        PATHS,
        track_post,
        "Convert tracking, JSON body (new tracking structure)",
        "convert",
        DURABLE,
        (400, 408, 413, 503),
        body=Body(WireTrack),
        params=(USER_AGENT,),
    ),
    Endpoint(
        "GET",
        PATHS,
        track_get,
        "Convert tracking as PHP-style bracket query, or the legacy push (c=, p=)",
        "convert",
        DURABLE,
        (400, 413, 503),
        params=TRACK_QUERY,
    ),
)
