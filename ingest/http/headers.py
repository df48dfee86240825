"""Request header values as text the edge can store and answer with.

aiohttp decodes header bytes as UTF-8 with ``surrogateescape``: each byte that is not UTF-8 becomes a lone
surrogate (U+DC80..U+DCFF), a string no JSON encoder, UTF-8 writer or ClickHouse column accepts. Every
header the edge keeps or echoes is read through this module, so that is decided here, once (decision in
docs/decisions.md):

- informational headers stored with an event (``User-Agent``, ``Referer``: :func:`header_text`) are
  **kept with the bad characters replaced**: every lone surrogate and every control character
  (:data:`ingest.formats.fields.CONTROL_CHARS`) becomes U+FFFD. The event itself is valid; a conversion is not
  lost because a client library put a Latin-1 byte in its user agent, the replacement is deterministic
  (the anonymous visitor id made from IP + user agent stays stable) and shows in the stored value;
- a header whose value we build on (``Host``, for the URLs of the admin answers:
  :func:`required_header_text`) is **refused** with 400 ``invalid_header`` naming it: a replaced value
  would make a wrong URL.

The client address (``X-Forwarded-For``) is parsed as an IP address by :mod:`ingest.http.forwarding`, which
refuses anything else; cookies are matched against our own id pattern (:mod:`ingest.formats.clicks`).
"""

from __future__ import annotations

from aiohttp import web

from ingest.errors import bad_request
from ingest.formats.fields import CONTROL_CHARS, control_char

REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    """``value`` with each lone surrogate (an undecodable byte) and control character replaced by U+FFFD."""
    if value.isprintable():  # the usual case, checked in C
        return value
    return CONTROL_CHARS.sub(REPLACEMENT, value)


def header_text(request: web.Request, name: str, *, max_len: int = 512) -> str:
    """The value of header ``name`` as clean text ('' when absent): stripped, cut to ``max_len``."""
    raw = request.headers.get(name)
    if not raw:
        return ""
    return clean_text(raw.strip()[:max_len]).strip()


def required_header_text(value: str, name: str) -> str:
    """``value`` (of header ``name``) unchanged; a 400 ``invalid_header`` if it is not clean text."""
    found = control_char(value)
    if found is not None:
        what = "bytes that are not UTF-8" if "\ud800" <= found <= "\udfff" else "control characters"
        raise bad_request("invalid_header", f"{name}: the header value contains {what}")
    return value
