"""``GET /c/{link_id}``: record a click, then redirect to the link's registered destination.

The click is durable (fsynced / acknowledged by Kafka) before the 302 is sent. The visitor cookie is
read, or set when absent or not ours (HttpOnly, SameSite=Lax, 400 days; Secure when the client spoke https
to this edge or to a trusted proxy), and refreshed on every click.
"""

from __future__ import annotations

from aiohttp import web

from ingest.errors import Rejected
from ingest.formats.clicks import (
    LINK_ID_RE,
    MAX_UTM_VALUE,
    UTM_KEY_PATTERN,
    click_event,
    destination,
    external_click_id,
    new_click_id,
    new_visitor_id,
    utm_from_query,
)
from ingest.http.api import Answer, Endpoint, Param
from ingest.http.common import CONFIG
from ingest.http.forwarding import is_https
from ingest.http.headers import header_text
from ingest.http.request_info import client_context, config_store, cookie_visitor
from ingest.http.routes.track import accept

COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest lifetime browsers keep (Chrome caps cookies at 400 days)


async def click(request: web.Request) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    store = config_store(request)
    link_id = request.match_info["link_id"]
    link = store.state.link(link_id) if LINK_ID_RE.match(link_id) else None
    if link is None:
        raise Rejected(404, "unknown_link", f"no tracking link {link_id[:80]!r}")
    ctx = client_context(request)
    visitor = cookie_visitor(request) or new_visitor_id()
    event_id, click_id = new_click_id(link.id)
    utm = {**link.utm(), **utm_from_query(request.rel_url.query)}
    event = click_event(
        link,
        event_id=event_id,
        click_id=click_id,
        visitor_id=visitor,
        utm=utm,
        referrer=header_text(request, "Referer", max_len=500) or None,
        ctx=ctx,
        external_click_id=external_click_id(link, request.rel_url.query),
    )
    await accept(request, [event], "click")
    target = destination(link, utm_from_query(request.rel_url.query), click_id, cfg.click_id_param)
    resp = web.Response(status=302, headers={"Location": target, "Cache-Control": "no-store"})
    resp.set_cookie(
        cfg.visitor_cookie,
        visitor,
        max_age=COOKIE_MAX_AGE,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=is_https(request),
    )
    return resp


def _utm(name: str) -> Param:
    return Param(name, "kept on the click and passed through to the destination", {"type": "string"})


ENDPOINTS = (
    Endpoint(
        "GET",
        ("/c/{link_id}",),
        click,
        "Tracking link: records a click, then 302 to the link's registered URL",
        "clicks",
        Answer(
            302,
            "to the destination with the UTM parameters and the click id added",
            media_type=None,
            headers=(("Location", "destination"), ("Set-Cookie", "visitor id cookie")),
        ),
        (404, 503),
        params=(
            Param("link_id", "link id", where="path"),
            *(_utm(f"utm_{n}") for n in ("source", "medium", "campaign", "term", "content")),
            Param(
                "utm",
                f"any other utm_* parameter likewise (at most {MAX_UTM_VALUE} characters are kept); "
                "no other parameter is read",
                {
                    "type": "object",
                    "patternProperties": {UTM_KEY_PATTERN: {"type": "string"}},
                    "additionalProperties": False,
                },
                style="form",
            ),
            Param(
                "external_click_id",
                "the traffic source's own click id, under the name the link's external_click_param gives "
                "(e.g. clickid=XYZ): kept on the click for the source's postback",
                {
                    "type": "object",
                    "patternProperties": {r"^[A-Za-z0-9_.-]{1,64}$": {"type": "string"}},
                    "additionalProperties": False,
                },
                style="form",
            ),
        ),
        # No HEAD: link previewers probe with HEAD, and a probe is not a click.
        allow_head=False,
    ),
)
