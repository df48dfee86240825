"""Pushwoosh endpoints ``POST /json/1.3/pushStat`` and ``POST /json/1.3/postEvent``.

Answers are in Pushwoosh's shape, errors too: ``{"status_code", "status_message", "response"}`` with
the HTTP status in ``status_code``; on an error ``response`` holds ``{"error": {"code", "message"}}``
so the problem is named as on every other endpoint. Rate limited per application code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ingest.errors import Rejected
from ingest.formats.pushwoosh import PostEventRequest, PushStatRequest, parse_post_event, parse_push_stat
from ingest.http.answers import PushwooshAnswer
from ingest.http.api import Answer, Body, Endpoint
from ingest.http.common import CONFIG, LIMITER, METRICS, json_response
from ingest.http.ratelimit import enforce
from ingest.http.request_info import client_context, decode_json_object, read_body
from ingest.http.routes.track import accept
from ingest.produce.publisher import PublishError
from schemas.events import Event

log = logging.getLogger(__name__)


def pushwoosh_answer(
    status: int, message: str, response: Any = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"status_code": status, "status_message": message, "response": response}
    return json_response(body, status=status, headers=headers)


def _rejected(request: web.Request, exc: Rejected) -> web.Response:
    request.app[METRICS].rejected.labels(exc.code).inc()
    headers = dict(exc.headers)
    if exc.retriable:
        headers.setdefault("Retry-After", "1")
    return pushwoosh_answer(exc.status, exc.message, exc.body(), headers or None)


def _endpoint(
    parse: Callable[[web.Request, Any], Event], fmt: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        try:
            body = decode_json_object(await read_body(request), '{"request": {...}}')
            event = parse(request, body)
            enforce(request.app[LIMITER], f"app:{event.app_id}", "application")
            await accept(request, [event], fmt)
        except Rejected as exc:
            return _rejected(request, exc)
        except PublishError as exc:
            return _rejected(
                request,
                Rejected(503, "not_durable", f"event not stored, retry: {exc}", headers={"Retry-After": "1"}),
            )
        return pushwoosh_answer(200, "OK", {"event_id": event.event_id})

    return handler


def _push_stat(request: web.Request, body: Any) -> Event:
    return parse_push_stat(body, client_context(request))


def _post_event(request: web.Request, body: Any) -> Event:
    max_attrs = min(100, request.app[CONFIG].max_events_per_request)
    return parse_post_event(body, client_context(request), max_attributes=max_attrs)


def _pushwoosh(
    path: str, parse: Callable[[web.Request, Any], Event], fmt: str, model: type, what: str
) -> Endpoint:
    return Endpoint(
        "POST",
        (path,),
        _endpoint(parse, fmt),
        what,
        "pushwoosh",
        Answer(200, "recorded", PushwooshAnswer),
        (400, 408, 413, 429, 503),
        body=Body(model, wrapper="request", wrapped="required"),
        error_shape="pushwoosh",
    )


ENDPOINTS = (
    _pushwoosh(
        "/json/1.3/pushStat", _push_stat, "pushwoosh_pushstat", PushStatRequest, "Pushwoosh push open"
    ),
    _pushwoosh(
        "/json/1.3/postEvent",
        _post_event,
        "pushwoosh_postevent",
        PostEventRequest,
        "Pushwoosh in-app event (the event name is the goal)",
    ),
)
