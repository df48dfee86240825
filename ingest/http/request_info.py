"""What the click, postback and conversion handlers read from a request besides their own fields:
client context (User-Agent optional here: postbacks and pixels come from servers and image tags), the
visitor cookie, the configuration store, and a size-limited JSON body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from ingest.errors import Rejected, bad_request, too_large
from ingest.formats.clicks import valid_visitor_cookie
from ingest.formats.context import RequestContext
from ingest.http.common import CONFIG, CONFIG_STORE
from ingest.http.forwarding import client_ip, is_https
from ingest.http.headers import header_text, required_header_text
from schemas.config import ConfigStore


def client_context(request: web.Request) -> RequestContext:
    ip = client_ip(request)
    ua = header_text(request, "User-Agent")
    return RequestContext(received_at=datetime.now(UTC), client_ip=ip, user_agent=ua)


def cookie_visitor(request: web.Request) -> str | None:
    return valid_visitor_cookie(request.cookies.get(request.app[CONFIG].visitor_cookie))


def config_store(request: web.Request) -> ConfigStore:
    store = request.app.get(CONFIG_STORE)
    if store is None:
        raise Rejected(503, "config_unavailable", "this edge has no configuration store (goals and links)")
    return store


def public_base(request: web.Request) -> str:
    """Base of the URLs answers hand out (tracking links, pixels): ``public_url`` when set, else the scheme
    the client spoke (https also through a trusted TLS proxy) and the request's host."""
    base = request.app[CONFIG].public_url
    if base:
        return base.rstrip("/")
    scheme = "https" if is_https(request) else request.scheme
    return f"{scheme}://{required_header_text(request.host, 'Host')}"


async def read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(f"body larger than {request.app[CONFIG].max_body_bytes} bytes") from None


def decode_json_object(raw: bytes, what: str) -> dict[str, Any]:
    if not raw.strip():
        raise bad_request("invalid_body", f"empty body: {what} is expected")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request("invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("invalid_body", f"body must be a JSON object ({what}), got {type(data).__name__}")
    return data
