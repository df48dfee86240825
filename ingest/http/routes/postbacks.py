"""FunnelFlux postbacks: ``GET`` or ``POST /pb/`` (see :mod:`ingest.formats.funnelflux` for the parameters).

A POST may carry the parameters in the query string (as the reference's URLs do), in a form body, or in
a JSON object body; a parameter given twice with different values is refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from ingest.errors import bad_request
from ingest.formats.funnelflux import PARAMS, PostbackParams, parse_postback
from ingest.http.api import Body, Endpoint
from ingest.http.common import json_response
from ingest.http.request_info import client_context, config_store, decode_json_object, read_body
from ingest.http.routes.track import DURABLE, accept


def _merge(params: dict[str, str], extra: dict[str, Any]) -> None:
    for key in PARAMS:
        if key not in extra or extra[key] is None:
            continue
        value = extra[key]
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float | str):
            value = str(value)
        else:
            raise bad_request("invalid_field", f"{key}: expected a string or number")
        if key in params and params[key] != value:
            raise bad_request("invalid_query", f"{key} is given twice with different values")
        params[key] = value


async def postback(request: web.Request) -> web.Response:
    store = config_store(request)
    params = {k: request.rel_url.query[k] for k in PARAMS if k in request.rel_url.query}
    if request.method == "POST":
        raw = await read_body(request)
        if raw.strip():
            if request.content_type == "application/json":
                _merge(params, decode_json_object(raw, "postback parameters"))
            else:
                try:
                    pairs = parse_qsl(raw.decode(), keep_blank_values=True)
                except UnicodeDecodeError:
                    raise bad_request("invalid_body", "body is not a UTF-8 form (a=1&b=2) nor JSON") from None
                _merge(params, dict(pairs))
    event = parse_postback(params, client_context(request), store.state)
    await accept(request, [event], "funnelflux")
    return json_response({"status": "ok", "accepted": 1, "event_ids": [event.event_id]})


_SUMMARY = "FunnelFlux postback: by hit id (hit=), or by visitor and link (vid=, p=)"
ENDPOINTS = tuple(
    Endpoint(
        method,
        ("/pb", "/pb/"),
        postback,
        _SUMMARY,
        "funnelflux",
        DURABLE,
        (400, 408, 413, 503),
        query_model=PostbackParams,
        body=Body(
            PostbackParams,
            required=False,
            description="the same parameters as a JSON object (or a form body, a=1&b=2); one given "
            "twice with different values is refused",
        )
        if method == "POST"
        else None,
        allow_head=False,
    )
    for method in ("GET", "POST")
)
