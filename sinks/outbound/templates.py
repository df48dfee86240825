"""Traffic-source S2S postbacks, the delivery half: rendering a link's template and deciding what fires.

The save-time half (template, status filter and rename map parsing) is ``schemas/outbound/postbacks.py``
(the edge checks links with it); its names are re-exported here.

A template is a GET or POST URL with macros ``{external_id}`` (the traffic source's own click id,
captured on the click), ``{click_id}``, ``{conversion_id}``, ``{goal_id}``, ``{payout}``, ``{currency}``,
``{status}``, ``{order_id}``, ``{timestamp}`` (unix seconds of the conversion). Checked when the link is
saved: unknown macros are named, braces must pair, macros may not appear in the scheme or host (a value
must never choose the destination), no fragment, and the URL (macros as ``0``) passes the SSRF guard.
Rendering percent-encodes every value completely (``&``, ``#``, ``/``, ``?``, ``=``, CR/LF, non-ASCII),
so a value can neither add parameters nor change the path. A POST sends the rendered query as an
``application/x-www-form-urlencoded`` body to the URL without its query.

Statuses: a filter (default: normal conversions only) and a rename map like Keitaro's
``lead=install sale=bill rejected=trash`` (keys: a raw status, a class ``normal``/``provisional``/
``reversed``, or Keitaro's ``sale``/``lead``/``rejected`` for those classes). A conversion with
``disable_postbacks`` fires nothing. One postback per conversion and status text unless the link opts
into updates (then again whenever the rendered request changes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import quote

import orjson

from schemas.conversion_facts import ConversionFacts
from schemas.jsonbytes import dumps_kept
from schemas.outbound.postbacks import (
    MACRO,
    MACROS,
    Method,
    PostbackTemplate,
    StatusFilter,
    StatusMap,
    TemplateError,
    TemplateProblem,
    parse_status_filter,
    parse_status_map,
    parse_template,
)
from sinks.outbound.events import conversion_id, money_text

__all__ = [
    "MACROS",
    "Method",
    "PostbackTemplate",
    "StatusFilter",
    "StatusMap",
    "TemplateError",
    "TemplateProblem",
    "parse_status_filter",
    "parse_status_map",
    "parse_template",
]

MAX_FIRED_STATUSES = 16
FIRED_DIGEST_VERSION = 1
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


# --- rendering and firing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostbackRule:
    """A link's postback settings (the lead adds them to ``Link``; see the report)."""

    link_id: str
    template: PostbackTemplate
    statuses: StatusFilter = field(default_factory=StatusFilter)
    status_map: StatusMap = field(default_factory=StatusMap)
    updates: bool = False  # fire again when the rendered request changes (default: once per status)


@dataclass(frozen=True, slots=True)
class PostbackRequest:
    method: Method
    url: str
    body: bytes | None = None
    content_type: str | None = None


def macro_values(row: ConversionFacts, external_id: str, status_text: str) -> dict[str, str]:
    return {
        "external_id": external_id,
        "click_id": row.attributed_click_id,
        "conversion_id": conversion_id(row),
        "goal_id": row.goal_id,
        "payout": money_text(row.revenue),
        "currency": row.currency,
        "status": status_text,
        "order_id": row.transaction_id,
        "timestamp": str(int(row.occurred_at.timestamp())),
    }


def render(template: PostbackTemplate, values: dict[str, str]) -> PostbackRequest:
    """Fill the macros, each value percent-encoded completely (no character of it stays special)."""
    url = MACRO.sub(lambda m: quote(values.get(m.group(1), ""), safe=""), template.text)
    if template.method is Method.GET:
        return PostbackRequest(Method.GET, url)
    base, _, query = url.partition("?")
    return PostbackRequest(Method.POST, base, query.encode("ascii"), FORM_CONTENT_TYPE)


class HoldReason(StrEnum):
    DUPLICATE = "duplicate"
    STALE = "stale"
    DISABLED = "disable_postbacks"
    FILTERED = "status_not_fired"
    NO_EXTERNAL_ID = "no_external_id"  # the template needs the source's click id and the click had none
    ALREADY_FIRED = "already_fired"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class FiredDigest:
    """Per conversion and link: highest version decided on, status texts fired, last request's hash."""

    version: int
    fired: tuple[str, ...] = ()
    last: str = ""

    def to_json(self) -> bytes:
        return dumps_kept(  # kept in the planner's state, one per conversion and link
            {"d": FIRED_DIGEST_VERSION, "v": self.version, "f": list(self.fired), "l": self.last}
        )

    @classmethod
    def from_json(cls, data: bytes) -> FiredDigest:
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("d") != FIRED_DIGEST_VERSION:
            raise ValueError("not a postback digest of a known version")
        version, fired, last = obj.get("v"), obj.get("f"), obj.get("l")
        if not isinstance(version, int) or not isinstance(fired, list) or not isinstance(last, str):
            raise ValueError("a postback digest has an int version, a list of statuses and a str hash")
        if not all(isinstance(f, str) for f in fired):
            raise ValueError("a postback digest's statuses are strings")
        return cls(version, tuple(fired), last)


@dataclass(frozen=True, slots=True)
class Fire:
    delivery_id: str
    request: PostbackRequest
    digest: FiredDigest


@dataclass(frozen=True, slots=True)
class Hold:
    reason: HoldReason
    digest: FiredDigest


def _request_hash(req: PostbackRequest) -> str:
    material = b"\x1f".join((req.method.value.encode(), req.url.encode(), req.body or b""))
    return hashlib.sha256(material).hexdigest()[:32]


def decide_postback(
    row: ConversionFacts, rule: PostbackRule, external_id: str, previous: FiredDigest | None
) -> Fire | Hold:
    """Whether ``row`` fires the link's postback, given what fired before for this conversion."""
    if previous is not None and row.version <= previous.version:
        return Hold(HoldReason.DUPLICATE if row.version == previous.version else HoldReason.STALE, previous)
    fired, last = (previous.fired, previous.last) if previous else ((), "")
    seen = FiredDigest(row.version, fired, last)
    if row.disable_postbacks:
        return Hold(HoldReason.DISABLED, seen)
    if not rule.statuses.fires(row):
        return Hold(HoldReason.FILTERED, seen)
    if rule.template.uses("external_id") and not external_id:
        return Hold(HoldReason.NO_EXTERNAL_ID, seen)
    status_text = rule.status_map.text_for(row)
    request = render(rule.template, macro_values(row, external_id, status_text))
    digest = _request_hash(request)
    if not rule.updates and status_text in fired:
        return Hold(HoldReason.ALREADY_FIRED, seen)
    if rule.updates and digest == last:
        return Hold(HoldReason.UNCHANGED, seen)
    parts = [row.project_id, row.goal_id, row.conversion_key, rule.link_id, status_text]
    if rule.updates:
        parts += [str(row.version), digest]
    delivery_id = "pb_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]
    new_fired = tuple(sorted({*fired, status_text}))[-MAX_FIRED_STATUSES:]
    return Fire(delivery_id, request, FiredDigest(row.version, new_fired, digest))
