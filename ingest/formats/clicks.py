"""Clicks on tracking links: click ids, the redirect target and the click event. Pure functions.

A click id (the FunnelFlux "hit id") is ``<link id>.<click event id>``: the link it was made on travels
inside it, so a postback that carries only ``hit=`` can be resolved to its link, project and goal at
the edge without a lookup of the click. The event id part is a time-ordered UUIDv7, unique per click.

The redirect goes only to the link's registered URL (validated at creation). Query parameters of the
click are not forwarded, except ``utm_*`` parameters; the click id is added under the configured name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from yarl import URL

from ingest.formats.context import RequestContext
from schemas.config import Link
from schemas.events import Event, EventType, Segment
from schemas.ids import new_event_id

LINK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CLICK_ID_RE = re.compile(
    r"^([A-Za-z0-9_-]{1,64})\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
UTM_KEY_PATTERN = r"^utm_[A-Za-z0-9_]{1,30}$"
_UTM_KEY_RE = re.compile(UTM_KEY_PATTERN)
_VISITOR_RE = re.compile(r"^[A-Za-z0-9_.-]{8,128}$")
MAX_UTM = 10
MAX_UTM_VALUE = 200


def new_click_id(link_id: str) -> tuple[str, str]:
    """(event id, click id) for a new click on ``link_id``."""
    event_id = new_event_id()
    return event_id, f"{link_id}.{event_id}"


def link_of_click(click_id: str) -> str | None:
    """The link id inside one of our click ids; None if ``click_id`` is not one of ours."""
    m = _CLICK_ID_RE.match(click_id)
    return m.group(1) if m else None


def valid_visitor_cookie(value: str | None) -> str | None:
    """The visitor id from our cookie, if it looks like one we set (anything else is replaced)."""
    if value and _VISITOR_RE.match(value):
        return value
    return None


def new_visitor_id() -> str:
    return new_event_id()


def utm_from_query(query: Mapping[str, str]) -> dict[str, str]:
    """The click's own ``utm_*`` parameters (bounded; over-long values are cut, not forwarded whole)."""
    out: dict[str, str] = {}
    for key, value in query.items():
        if len(out) >= MAX_UTM:
            break
        if _UTM_KEY_RE.match(key) and value and key not in out:
            out[key] = value[:MAX_UTM_VALUE]
    return out


MAX_EXTERNAL_CLICK_ID = 200


def external_click_id(link: Link, query: Mapping[str, str]) -> str | None:
    """The traffic source's own click id, from the link's ``external_click_param`` (issue 13): kept on
    the click so a postback to the source can carry it. Over-long values are cut; a value with control
    characters is not kept."""
    if not link.external_click_param:
        return None
    value = query.get(link.external_click_param, "").strip()
    if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return None
    return value[:MAX_EXTERNAL_CLICK_ID]


def destination(link: Link, click_utm: Mapping[str, str], click_id: str, click_param: str) -> str:
    """The redirect target: the registered URL with the link's UTM fields, the click's UTM parameters
    (they win over the link's) and the click id. Parameters of the same name already in the URL are
    replaced; everything else in the URL (path, other parameters, fragment) is kept."""
    params = {**link.utm(), **click_utm, click_param: click_id}
    return str(URL(link.url).update_query(params))


def click_event(
    link: Link,
    *,
    event_id: str,
    click_id: str,
    visitor_id: str,
    utm: Mapping[str, str],
    referrer: str | None,
    ctx: RequestContext,
    external_click_id: str | None = None,
) -> Event:
    attributes = dict(utm)
    if referrer:
        attributes["referrer"] = referrer[:500]
    return Event(
        event_id=event_id,
        type=EventType.CLICK,
        received_at=ctx.received_at,
        occurred_at=ctx.received_at,
        account_id=link.project,
        project_id=link.project,
        visitor_id=visitor_id,
        segment=Segment(
            source=utm.get("utm_source"),
            campaign=link.campaign or utm.get("utm_campaign"),
        ),
        client_ip=ctx.client_ip,
        user_agent=ctx.user_agent or None,
        source_format="click",
        click_id=click_id,
        external_click_id=external_click_id,
        link_id=link.id,
        attributes=attributes,
    )
