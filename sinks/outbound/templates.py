"""Traffic-source S2S postbacks: a link's URL template, which statuses fire it and what it sends.

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
import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from schemas.rows import Conversion
from sinks.outbound.events import conversion_id, money_text
from sinks.outbound.ssrf import AllowList, Refused, check_url

MACROS = (
    "external_id",
    "click_id",
    "conversion_id",
    "goal_id",
    "payout",
    "currency",
    "status",
    "order_id",
    "timestamp",
)
MAX_TEMPLATE_LENGTH = 2048
MAX_FIRED_STATUSES = 16
STATUS_CLASSES = ("normal", "provisional", "reversed")
CLASS_ALIASES = {"sale": "normal", "lead": "provisional", "rejected": "reversed"}  # Keitaro's names
DEFAULT_STATUS_TEXT = "approved"  # a normal conversion sent without a status
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

_MACRO = re.compile(r"\{([^{}]*)\}")
_STATUS_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Method(StrEnum):
    GET = "GET"
    POST = "POST"


class TemplateProblem(StrEnum):
    BAD_METHOD = "bad_method"
    EMPTY = "empty"
    TOO_LONG = "too_long"
    UNKNOWN_MACRO = "unknown_macro"
    BAD_BRACE = "bad_brace"
    MACRO_IN_HOST = "macro_in_host"
    FRAGMENT = "fragment"
    DESTINATION = "destination"  # refused by the SSRF guard
    BAD_STATUS_FILTER = "bad_status_filter"
    BAD_STATUS_MAP = "bad_status_map"


class TemplateError(ValueError):
    """A link setting refused when saving it (the message names the problem). Never retriable."""

    retriable = False

    def __init__(self, problem: TemplateProblem, message: str):
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class PostbackTemplate:
    method: Method
    text: str
    macros: frozenset[str]

    def uses(self, macro: str) -> bool:
        return macro in self.macros


def parse_template(text: str, method: Method | str = Method.GET, *, allow: AllowList) -> PostbackTemplate:
    try:
        verb = Method(method.upper() if isinstance(method, str) else method)
    except ValueError:
        raise TemplateError(TemplateProblem.BAD_METHOD, "a postback method is GET or POST") from None
    text = text.strip()
    if not text:
        raise TemplateError(TemplateProblem.EMPTY, "a postback template is a URL")
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(
            TemplateProblem.TOO_LONG, f"a postback template has at most {MAX_TEMPLATE_LENGTH} characters"
        )
    names = _MACRO.findall(text)
    unknown = sorted({n for n in names if n not in MACROS})
    if unknown:
        listed = ", ".join("{" + n + "}" for n in unknown)
        known = ", ".join("{" + n + "}" for n in MACROS)
        raise TemplateError(TemplateProblem.UNKNOWN_MACRO, f"unknown macros {listed}; known: {known}")
    if "{" in _MACRO.sub("", text) or "}" in _MACRO.sub("", text):
        raise TemplateError(TemplateProblem.BAD_BRACE, "a '{' or '}' that is not part of a {macro}")
    scheme, sep, rest = text.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if sep and ("{" in scheme or "{" in authority):
        raise TemplateError(
            TemplateProblem.MACRO_IN_HOST, "macros may not appear in the scheme, host or port"
        )
    if "#" in text:
        raise TemplateError(TemplateProblem.FRAGMENT, "a postback URL has no '#fragment'")
    checked = check_url(_MACRO.sub("0", text), allow)
    if isinstance(checked, Refused):
        raise TemplateError(
            TemplateProblem.DESTINATION, f"postback URL refused ({checked.reason.value}): {checked.detail}"
        )
    return PostbackTemplate(verb, text, frozenset(names))


# --- statuses -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusFilter:
    """Which conversions fire: by class (normal, provisional, reversed) or by raw status."""

    classes: frozenset[str] = frozenset({"normal"})
    statuses: frozenset[str] = frozenset()

    def fires(self, row: Conversion) -> bool:
        return row.status_class in self.classes or row.status.strip().lower() in self.statuses


def parse_status_filter(text: str | None) -> StatusFilter:
    """``"normal,provisional"`` or ``"sale lead approved"``; blank -> normal conversions only."""
    tokens = [t for t in re.split(r"[\s,]+", (text or "").strip()) if t]
    if not tokens:
        return StatusFilter()
    classes, statuses = set(), set()
    for t in tokens:
        low = t.lower()
        if not _STATUS_TOKEN.match(t):
            raise TemplateError(TemplateProblem.BAD_STATUS_FILTER, f"status {t!r} is not a status name")
        if low in STATUS_CLASSES:
            classes.add(low)
        elif low in CLASS_ALIASES:
            classes.add(CLASS_ALIASES[low])
        else:
            statuses.add(low)
    return StatusFilter(frozenset(classes), frozenset(statuses))


@dataclass(frozen=True, slots=True)
class StatusMap:
    renames: tuple[tuple[str, str], ...] = ()  # (from, lower-case; to, as given)

    def text_for(self, row: Conversion) -> str:
        table = dict(self.renames)
        raw = row.status.strip()
        for key in (raw.lower(), row.status_class):
            if key and key in table:
                return table[key]
        for alias, cls in CLASS_ALIASES.items():
            if cls == row.status_class and alias in table:
                return table[alias]
        return raw or DEFAULT_STATUS_TEXT


def parse_status_map(text: str | None) -> StatusMap:
    """``"lead=install sale=bill rejected=trash"`` (spaces or commas between pairs)."""
    pairs: dict[str, str] = {}
    for item in (t for t in re.split(r"[\s,]+", (text or "").strip()) if t):
        src, eq, dst = item.partition("=")
        if not eq or not _STATUS_TOKEN.match(src) or not _STATUS_TOKEN.match(dst):
            raise TemplateError(TemplateProblem.BAD_STATUS_MAP, f"{item!r} is not status=new_name")
        if src.lower() in pairs:
            raise TemplateError(TemplateProblem.BAD_STATUS_MAP, f"status {src!r} is renamed twice")
        pairs[src.lower()] = dst
    return StatusMap(tuple(sorted(pairs.items())))


# --- rendering and firing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostbackRule:
    """A link's postback settings (the lead adds them to ``Link``; see the report)."""

    link_id: str
    template: PostbackTemplate
    statuses: StatusFilter = StatusFilter()
    status_map: StatusMap = StatusMap()
    updates: bool = False  # fire again when the rendered request changes (default: once per status)


@dataclass(frozen=True, slots=True)
class PostbackRequest:
    method: Method
    url: str
    body: bytes | None = None
    content_type: str | None = None


def macro_values(row: Conversion, external_id: str, status_text: str) -> dict[str, str]:
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
    url = _MACRO.sub(lambda m: quote(values.get(m.group(1), ""), safe=""), template.text)
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
    row: Conversion, rule: PostbackRule, external_id: str, previous: FiredDigest | None
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
