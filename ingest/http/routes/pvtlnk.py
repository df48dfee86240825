"""PVTLNK conversion tracking (see :mod:`ingest.formats.pvtlnk`).

- ``POST /api/conversions/track/{token}`` JSON ``{value, currency, order_id, click_id?}``;
- ``GET`` on the same path with query parameters: the tracking pixel. It always answers a 1x1
  transparent GIF (no-cache), with the true status: 200 when recorded; on bad input a 4xx status with
  the GIF, nothing recorded, and the reason logged and counted (``trackpipe_edge_pixel_rejected``);
- ``POST /api/v1/conversions/track`` with ``postback_token`` in the JSON body.

An unknown token is a 404 on the path form and a 401 on the body form, with the same message either
way; the token is looked up by digest and compared in constant time. Requests are rate limited per goal.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ingest.errors import Rejected
from ingest.formats.pvtlnk import FIELDS, ConversionFields, TokenConversionFields, parse_conversion
from ingest.http.answers import ConversionAccepted
from ingest.http.api import Answer, Body, Endpoint, Param
from ingest.http.common import LIMITER, METRICS, json_response
from ingest.http.ratelimit import enforce
from ingest.http.request_info import (
    client_context,
    config_store,
    cookie_visitor,
    decode_json_object,
    read_body,
)
from ingest.http.routes.track import accept
from ingest.produce.publisher import PublishError
from schemas.config import Goal

log = logging.getLogger(__name__)

PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
_REFUSED = "the postback token is not valid"


def _goal(request: web.Request, token: Any, *, status: int) -> Goal:
    store = config_store(request)
    goal = store.state.goal_by_token(token) if isinstance(token, str) and 0 < len(token) <= 200 else None
    if goal is None:
        raise Rejected(status, "unknown_token" if status == 404 else "invalid_token", _REFUSED)
    enforce(request.app[LIMITER], f"goal:{goal.id}", "postback token")
    return goal


async def _record(request: web.Request, data: dict[str, Any], goal: Goal, fmt: str) -> str:
    event = parse_conversion(
        data,
        goal,
        client_context(request),
        config_store(request).state,
        visitor_id=cookie_visitor(request),
        source_format=fmt,
    )
    await accept(request, [event], fmt)
    return event.event_id


def _answer(goal: Goal, event_id: str) -> web.Response:
    return json_response(
        {
            "status": "ok",
            "accepted": 1,
            "conversion_id": event_id,
            "goal_id": goal.id,
            "event_ids": [event_id],
        }
    )


async def track_token_post(request: web.Request) -> web.Response:
    goal = _goal(request, request.match_info["token"], status=404)
    raw = await read_body(request)
    data = decode_json_object(raw, "a conversion object") if raw.strip() else {}
    return _answer(goal, await _record(request, data, goal, "pvtlnk"))


async def track_body_token(request: web.Request) -> web.Response:
    data = decode_json_object(await read_body(request), "a conversion object with postback_token")
    goal = _goal(request, data.get("postback_token"), status=401)
    return _answer(goal, await _record(request, data, goal, "pvtlnk_api"))


def _gif(status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=PIXEL_GIF, status=status, content_type="image/gif", headers={**NO_CACHE, **(headers or {})}
    )


async def track_pixel(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    try:
        goal = _goal(request, request.match_info["token"], status=404)
        query = request.rel_url.query
        await _record(request, {k: query[k] for k in FIELDS if k in query}, goal, "pvtlnk_pixel")
    except Rejected as exc:
        metrics.pixel_rejected.labels(exc.code).inc()
        log.warning("conversion pixel not recorded (%s): %s", exc.code, exc.message)
        return _gif(exc.status, exc.headers | ({"Retry-After": "1"} if exc.retriable else {}))
    except PublishError as exc:
        metrics.pixel_rejected.labels("not_durable").inc()
        log.warning("conversion pixel not recorded (not_durable): %s", exc)
        return _gif(503, {"Retry-After": "1"})
    return _gif(200)


_TOKEN = Param("token", "the goal's postback token", where="path")
_RECORDED = Answer(200, "durable", ConversionAccepted)
ENDPOINTS = (
    Endpoint(
        "POST",
        ("/api/conversions/track/{token}",),
        track_token_post,
        "PVTLNK conversion for the goal of the postback token",
        "pvtlnk",
        _RECORDED,
        (400, 404, 408, 413, 429, 503),
        body=Body(ConversionFields, required=False),
        params=(_TOKEN,),
    ),
    Endpoint(
        "GET",
        ("/api/conversions/track/{token}",),
        track_pixel,
        "Conversion pixel: always a 1x1 GIF; nothing recorded on a 4xx",
        "pvtlnk",
        Answer(
            200,
            "recorded",
            schema={"type": "string", "format": "binary"},
            media_type="image/gif",
            headers=(("Cache-Control", "no-store, no-cache"),),
        ),
        (400, 404, 429, 503),
        query_model=ConversionFields,
        params=(_TOKEN,),
        error_shape="gif",
        allow_head=False,
    ),
    Endpoint(
        "POST",
        ("/api/v1/conversions/track",),
        track_body_token,
        "PVTLNK server-side conversion with postback_token in the body",
        "pvtlnk",
        _RECORDED,
        (400, 401, 408, 413, 429, 503),
        body=Body(TokenConversionFields),
    ),
)
