"""What flows between the processing stages, and the envelope records that carry it.

Stages and their keys (each stage's state is keyed the same way as its input topic):

- ``visitor`` (visitor id): sessions, touches, experiment exposures, attribution paths. Reads the
  events topic itself (the edge already partitions it by visitor id) plus ``Resolved`` messages.
- ``click`` (project + click id): which visitor made a click; resolves postbacks that name a click (hit id).
- ``fingerprint`` (project + client IP + user agent): PVTLNK auto-attribution.
- ``conversion`` (project + conversion key): dedup, statuses, the final attributed conversion.

Every stage topic carries envelope records (many messages per record), like the events topic::

    {"envelope": 1, "kind": "stage", "schema": 1, "items": [<message>, ...]}
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, Literal

import msgspec
import orjson

from processors.codec import dumps
from schemas.envelope import ENVELOPE_VERSION, EnvelopeError

STAGE_SCHEMA = 1

Stage = Literal["visitor", "click", "fingerprint", "conversion"]
STAGES: tuple[Stage, ...] = ("visitor", "click", "fingerprint", "conversion")

Method = Literal["click", "visitor_link", "visitor", "push", "fingerprint", "none"]


class _Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, gc=False):
    """Messages are msgspec Structs (decision 110): immutable, ~10x cheaper to build than a pydantic model,
    and not tracked by the cyclic collector (``gc=False``: they hold only values, tuples and other such
    Structs, so they can never be part of a reference cycle). Their JSON is field for field what the
    pydantic models of the previous release wrote (``processors/test_state_compat.py``)."""


class Touch(_Frozen, frozen=True, kw_only=True):
    """A marketing touch in a visitor's path: a click on a link or a push open."""

    touch_id: str  # the click id, or "push:<event id>"
    kind: Literal["click", "push"]
    at: datetime
    link_id: str = ""
    campaign: str = ""
    push_hash: str = ""
    external_click_id: str = ""  # a click's traffic-source click id (link's external_click_param)


class ClickInfo(_Frozen, frozen=True, kw_only=True):
    click_id: str
    project_id: str
    visitor_id: str
    link_id: str = ""
    campaign: str = ""
    at: datetime
    received_at: datetime
    client_ip: str = ""
    user_agent: str = ""
    external_click_id: str = ""  # the traffic source's click id, "" = none


class ConvEvent(_Frozen, frozen=True, kw_only=True):
    """The fields of a conversion-bearing event the stages need (compact, no segment)."""

    event_id: str
    type: str
    key: str  # conversion key within the project (see processors.dedup)
    project_id: str
    account_id: str
    visitor_id: str  # as sent ("" when a postback names no visitor)
    occurred_at: datetime
    received_at: datetime
    goal_ids: tuple[str, ...]
    revenue: Decimal | None = None
    currency: str = ""
    products_count: int = 0
    transaction_id: str = ""
    status: str = ""
    disable_postbacks: bool = False
    click_id: str = ""
    link_id: str = ""
    push_hash: str = ""
    client_ip: str = ""
    user_agent: str = ""
    experiments: tuple[tuple[str, str], ...] = ()
    campaign: str = ""
    window_days: int | None = None


class Resolution(_Frozen, frozen=True, kw_only=True):
    """Who converted and which touch the conversion names. ``rank`` grows as better information
    arrives (a later resolution of the same event replaces an earlier one only if its rank is higher)."""

    method: Method
    visitor_id: str = ""
    anchor_id: str = ""  # the touch the conversion names (click id), "" = the most recent one
    link_id: str = ""  # visitor_link: the page (link) whose latest click converted
    rank: int = 0


class _Message(_Frozen, frozen=True, tag_field="t"):
    """A stage message: its JSON starts with ``"t": <its kind>`` (``t`` is also readable on the class)."""


class ClickReg(_Message, frozen=True, tag="click_reg", kw_only=True):
    t: ClassVar[str] = "click_reg"
    click: ClickInfo


class ClickLookup(_Message, frozen=True, tag="click_lookup", kw_only=True):
    t: ClassVar[str] = "click_lookup"
    conv: ConvEvent


class FpReg(_Message, frozen=True, tag="fp_reg", kw_only=True):
    t: ClassVar[str] = "fp_reg"
    click: ClickInfo


class FpLookup(_Message, frozen=True, tag="fp_lookup", kw_only=True):
    t: ClassVar[str] = "fp_lookup"
    conv: ConvEvent


class Resolved(_Message, frozen=True, tag="resolved", kw_only=True):
    t: ClassVar[str] = "resolved"
    conv: ConvEvent
    res: Resolution


class Attributed(_Message, frozen=True, tag="attributed", kw_only=True):
    """A conversion event with its resolution and the visitor's path at the time of the event."""

    t: ClassVar[str] = "attributed"
    conv: ConvEvent
    res: Resolution
    path: tuple[Touch, ...] = ()  # touches inside the longest window of the event's goals, oldest first
    variations: tuple[tuple[str, str], ...] = ()  # (experiment, variation) the visitor had seen
    path_version: int = 0  # grows with the visitor state the path was computed from

    @property
    def info(self) -> int:
        """Monotone measure of how much this message knows (for max-merge and row versions)."""
        return min(self.res.rank, 1 << 20) * (1 << 24) + min(self.path_version, (1 << 24) - 1)


Message = ClickReg | ClickLookup | FpReg | FpLookup | Resolved | Attributed


def fingerprint_key(project: str, ip: str, ua: str) -> str:
    digest = hashlib.sha256(f"{ip}\x1f{ua}".encode()).hexdigest()[:32]
    return f"{project}\x1f{digest}"


def click_key(project: str, click_id: str) -> str:
    """Click ids are unique per project (PVTLNK ``click_id`` may be the integrator's own number)."""
    return f"{project}\x1f{click_id}"


def conversion_route_key(project: str, key: str) -> str:
    return f"{project}\x1f{key}"


def route(msg: Message) -> tuple[Stage, str]:
    """The stage a message goes to and the key (= partitioning key) it is processed under."""
    if isinstance(msg, ClickReg):
        return "click", click_key(msg.click.project_id, msg.click.click_id)
    if isinstance(msg, ClickLookup):
        return "click", click_key(msg.conv.project_id, msg.conv.click_id)
    if isinstance(msg, FpReg):
        c = msg.click
        return "fingerprint", fingerprint_key(c.project_id, c.client_ip, c.user_agent)
    if isinstance(msg, FpLookup):
        v = msg.conv
        return "fingerprint", fingerprint_key(v.project_id, v.client_ip, v.user_agent)
    if isinstance(msg, Resolved):
        return "visitor", msg.res.visitor_id
    return "conversion", conversion_route_key(msg.conv.project_id, msg.conv.key)


#: Largest envelope record the stages should produce: under Kafka's default 1 MB ``max_request_size``
#: (producer) and ``message.max.bytes`` (broker), with room for the record's key and headers.
MAX_RECORD_BYTES = 900_000

_STAGE_HEAD = b'{"envelope":%d,"kind":"stage","schema":%d,"items":[' % (ENVELOPE_VERSION, STAGE_SCHEMA)


def _json(msg: Message) -> bytes:
    return dumps(msg)


def encode_messages(msgs: Iterable[Message]) -> bytes:
    body = b",".join(_json(m) for m in msgs)
    return _STAGE_HEAD + body + b"]}"


def envelope_chunks(head: bytes, items: Iterable[bytes], max_bytes: int = MAX_RECORD_BYTES) -> list[bytes]:
    """``head + b",".join(items) + b"]}"`` split into as few records as keep each within ``max_bytes``,
    items in order (an item too large on its own still gets a record of its own). No items: no record."""
    out: list[bytes] = []
    part: list[bytes] = []
    size = len(head) + 2
    for item in items:
        if part and size + 1 + len(item) > max_bytes:
            out.append(head + b",".join(part) + b"]}")
            part, size = [], len(head) + 2
        size += len(item) + (1 if part else 0)
        part.append(item)
    if part:
        out.append(head + b",".join(part) + b"]}")
    return out


def encode_message_records(msgs: Iterable[Message], max_bytes: int = MAX_RECORD_BYTES) -> list[bytes]:
    """Stage envelope records of ``msgs`` (in order), each within ``max_bytes``: what a stage should send
    instead of one :func:`encode_messages` record, which a large batch makes larger than Kafka accepts."""
    return envelope_chunks(_STAGE_HEAD, (_json(m) for m in msgs), max_bytes)


class _StageEnvelope(msgspec.Struct):
    """Fast path of :func:`decode_messages`: a well-formed stage envelope read from the JSON bytes in one
    strict pass (anything else takes the checks below, which say exactly what is wrong)."""

    envelope: Literal[1]  # == ENVELOPE_VERSION
    kind: Literal["stage"]
    schema: Literal[1]  # == STAGE_SCHEMA
    items: list[Message]


assert ENVELOPE_VERSION == 1 and STAGE_SCHEMA == 1, "update _StageEnvelope"
_stage_decoder = msgspec.json.Decoder(_StageEnvelope)


def decode_messages(data: bytes) -> Sequence[Message]:
    try:
        return _stage_decoder.decode(data).items
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(f"record is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("envelope") != ENVELOPE_VERSION or obj.get("kind") != "stage":
        raise EnvelopeError("not a stage envelope (envelope 1, kind 'stage')")
    if obj.get("schema") != STAGE_SCHEMA:
        raise EnvelopeError(f"unsupported stage schema {obj.get('schema')!r}, expected {STAGE_SCHEMA}")
    try:  # lax, like the pydantic models of earlier releases (text for numbers, ...)
        return msgspec.convert(obj.get("items"), list[Message], strict=False)
    except msgspec.ValidationError as exc:
        raise EnvelopeError(f"stage items do not match the message schema: {exc}") from exc
