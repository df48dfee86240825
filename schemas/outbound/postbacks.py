"""Traffic-source S2S postback settings of a link, checked when the link is saved (pure, no I/O).

Moved here from ``sinks/outbound/templates.py`` so the edge (``ingest/``, which may not import
``sinks/``) validates a link with the same code the delivery engine renders it with.

A template is a GET or POST URL with macros ``{external_id}`` (the traffic source's own click id,
captured on the click), ``{click_id}``, ``{conversion_id}``, ``{goal_id}``, ``{payout}``, ``{currency}``,
``{status}``, ``{order_id}``, ``{timestamp}`` (unix seconds of the conversion). Checked when the link is
saved: unknown macros are named, braces must pair, macros may not appear in the scheme or host (a value
must never choose the destination), no fragment, and the URL (macros as ``0``) passes the SSRF guard.

Statuses: a filter (default: normal conversions only) and a rename map like Keitaro's
``lead=install sale=bill rejected=trash`` (keys: a raw status, a class ``normal``/``provisional``/
``reversed``, or Keitaro's ``sale``/``lead``/``rejected`` for those classes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from schemas.conversion_facts import ConversionFacts
from schemas.outbound.ssrf import AllowList, Refused, check_url

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
STATUS_CLASSES = ("normal", "provisional", "reversed")
CLASS_ALIASES = {"sale": "normal", "lead": "provisional", "rejected": "reversed"}  # Keitaro's names
DEFAULT_STATUS_TEXT = "approved"  # a normal conversion sent without a status

MACRO = re.compile(r"\{([^{}]*)\}")
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
    names = MACRO.findall(text)
    unknown = sorted({n for n in names if n not in MACROS})
    if unknown:
        listed = ", ".join("{" + n + "}" for n in unknown)
        known = ", ".join("{" + n + "}" for n in MACROS)
        raise TemplateError(TemplateProblem.UNKNOWN_MACRO, f"unknown macros {listed}; known: {known}")
    if "{" in MACRO.sub("", text) or "}" in MACRO.sub("", text):
        raise TemplateError(TemplateProblem.BAD_BRACE, "a '{' or '}' that is not part of a {macro}")
    scheme, sep, rest = text.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if sep and ("{" in scheme or "{" in authority):
        raise TemplateError(
            TemplateProblem.MACRO_IN_HOST, "macros may not appear in the scheme, host or port"
        )
    if "#" in text:
        raise TemplateError(TemplateProblem.FRAGMENT, "a postback URL has no '#fragment'")
    checked = check_url(MACRO.sub("0", text), allow)
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

    def fires(self, row: ConversionFacts) -> bool:
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

    def text_for(self, row: ConversionFacts) -> str:
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
