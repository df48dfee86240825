"""Pushwoosh push opens and in-app events (reference 000), in Pushwoosh's own request shape.

- ``pushStat`` ``{"request": {"application", "hwid", "hash"}}`` -> a ``push_open`` event.
- ``postEvent`` ``{"request": {"application", "hwid", "userId", "event", "attributes": {"msgHash", ...}}}``
  -> a ``custom_event`` whose goal is the event name (Pushwoosh conversions are events, counted per
  push via ``msgHash``).

The project of both is the application code; the visitor is the device (``hwid``). Other keys the SDKs
send (``timestampUTC``, ``device_type``, ...) are accepted and not interpreted: the event time is the
time we received it.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, ValidationError

from ingest.errors import Rejected, bad_request, too_large
from ingest.formats import fields
from ingest.formats.context import RequestContext
from schemas.events import Event, EventType
from schemas.ids import new_event_id

_NoControl = BeforeValidator(fields.no_control_chars)  # checked before whitespace is stripped
AppCode = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.-]{1,64}$"), _NoControl
]
Hwid = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _NoControl]
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _NoControl]
MAX_ATTRIBUTE_KEY = 100
MAX_ATTRIBUTE_VALUE = 1000


class PushStatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    application: AppCode
    hwid: Hwid
    hash: Short
    userId: Short | None = None  # Pushwoosh spells it so


class PostEventRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    application: AppCode
    hwid: Hwid
    userId: Short | None = None  # Pushwoosh spells it so
    event: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), _NoControl]
    attributes: dict[str, Any] = {}


def _request(body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
        raise bad_request("invalid_body", 'body must be a JSON object {"request": {...}}')
    return body["request"]


def _rejection(exc: ValidationError) -> Rejected:
    details = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = ".".join(["request", *(str(p) for p in err["loc"])])
        details.append({"field": loc, "problem": err["msg"]})
    code = "missing_field" if exc.errors()[0]["type"] == "missing" else "invalid_field"
    return bad_request(code, f"{details[0]['field']}: {details[0]['problem']}", details)


def _attr_value(key: str, value: Any) -> str:
    if isinstance(value, str):
        out = value
    elif isinstance(value, bool):
        out = "true" if value else "false"
    elif isinstance(value, int | float):
        out = str(value)
    else:
        out = orjson.dumps(value).decode()
    if len(out) > MAX_ATTRIBUTE_VALUE:
        raise bad_request(
            "invalid_field", f"request.attributes.{key}: longer than {MAX_ATTRIBUTE_VALUE} characters"
        )
    return out


def _event(req: PushStatRequest | PostEventRequest, ctx: RequestContext, **kw: Any) -> Event:
    return Event(
        event_id=new_event_id(),
        received_at=ctx.received_at,
        occurred_at=ctx.received_at,
        account_id=req.application,
        project_id=req.application,
        visitor_id=req.hwid,
        client_ip=ctx.client_ip,
        user_agent=ctx.user_agent or None,
        app_id=req.application,
        device_id=req.hwid,
        user_id=req.userId,
        **kw,
    )


def parse_push_stat(body: Any, ctx: RequestContext) -> Event:
    try:
        req = PushStatRequest.model_validate(_request(body))
    except ValidationError as exc:
        raise _rejection(exc) from None
    return _event(req, ctx, type=EventType.PUSH_OPEN, push_hash=req.hash, source_format="pushwoosh_pushstat")


def parse_post_event(body: Any, ctx: RequestContext, *, max_attributes: int = 100) -> Event:
    raw = _request(body)
    attrs = raw.get("attributes")
    if isinstance(attrs, dict) and len(attrs) > max_attributes:
        raise too_large(f"request.attributes has {len(attrs)} entries; at most {max_attributes}")
    try:
        req = PostEventRequest.model_validate(raw)
    except ValidationError as exc:
        raise _rejection(exc) from None
    attributes: dict[str, str] = {}
    for key, value in req.attributes.items():
        if not key or len(key) > MAX_ATTRIBUTE_KEY:
            raise bad_request("invalid_field", f"request.attributes: key {key[:40]!r} is empty or too long")
        fields.control_free(key, "request.attributes")
        if value is not None:
            attributes[key] = _attr_value(key, value)
    msg_hash = attributes.get("msgHash") or None
    if msg_hash is not None:  # an id (conversions are counted per push): checked like the others
        fields.control_free(msg_hash, "request.attributes.msgHash")
    return _event(
        req,
        ctx,
        type=EventType.CUSTOM_EVENT,
        event_name=req.event,
        goal_ids=(req.event,),
        push_hash=msg_hash,
        attributes=attributes,
        source_format="pushwoosh_postevent",
    )
