"""FunnelFlux postbacks (reference 004): ``/pb/?hit=&tx=&rev=&status=&currency=&disable_postbacks=``
and the session variant ``/pb/?vid=&p=&tx=&rev=``.

- ``hit``: one of our click ids (``<link>.<uuid>``, see :mod:`ingest.formats.clicks`); the link inside
  it gives project and goal. ``vid`` + ``p``: visitor id + page (link) id, resolved by the processors to that
  visitor's most recent click on the link; ``vid`` alone needs ``goal=`` (its project). Not both
  ``hit`` and ``vid`` (the reference says so).
- Goal: ``goal=`` if given, else the link's goal, else the project's default goal; a postback that
  resolves to no goal is refused (400), it could never count.
- ``rev`` optional: the goal's default value is used. ``status`` is carried exactly as sent; the
  processors apply its meaning. The visitor of a ``hit`` postback is unknown here (empty visitor id):
  the processors take it from the click.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from ingest.errors import bad_request
from ingest.formats import fields
from ingest.formats.clicks import LINK_ID_RE, link_of_click
from ingest.formats.context import RequestContext
from ingest.formats.goal_events import goal_postback
from schemas.config import ConfigState, Goal, Link
from schemas.events import Event

#: A parameter in the query string is text; in a JSON body any scalar is taken as its text.
Scalar = str | int | float | bool


class PostbackParams(BaseModel):
    """The parameters :func:`parse_postback` reads (``PARAMS``), in the query string, a form body or a
    JSON object body. It describes them; the checks are those of :mod:`ingest.formats.fields`."""

    model_config = ConfigDict(extra="ignore")

    hit: Scalar | None = Field(None, description="click id (hit id) from the click's redirect")
    vid: Scalar | None = Field(None, description="visitor id (with p: the visitor's latest click on it)")
    p: Scalar | None = Field(None, description="link (page) id")
    tx: Scalar | None = Field(None, description="transaction id")
    rev: Scalar | None = Field(None, description="revenue, a plain decimal (default: the goal's value)")
    status: Scalar | None = Field(None, description="conversion status, carried as sent (pending, ...)")
    currency: Scalar | None = Field(None, description="active ISO 4217 code (default: the goal's)")
    disable_postbacks: Scalar | None = Field(None, description="true: do not forward to the traffic source")
    goal: Scalar | None = Field(None, description="goal id (default: the link's, then the project's default)")


PARAMS = tuple(PostbackParams.model_fields)


def _link(state: ConfigState, link_id: str, field: str) -> Link:
    link = state.link(link_id) if LINK_ID_RE.match(link_id) else None
    if link is None:
        raise bad_request("invalid_field", f"{field}: {link_id[:80]!r} refers to no known link")
    return link


def parse_postback(params: Mapping[str, str], ctx: RequestContext, state: ConfigState) -> Event:
    hit = fields.text(params.get("hit"), "hit")
    vid = fields.text(params.get("vid"), "vid")
    page = fields.text(params.get("p"), "p", max_len=64)
    goal_id = fields.text(params.get("goal"), "goal", max_len=64)
    if hit and vid:
        raise bad_request("invalid_query", "pass hit or vid, not both")
    if not hit and not vid:
        raise bad_request("missing_field", "hit (click id) or vid (visitor id) is required")

    link: Link | None = None
    if hit:
        hit_link = link_of_click(hit)
        if hit_link is None:
            raise bad_request("invalid_field", f"hit: {hit[:80]!r} is not a click id issued by this tracker")
        link = _link(state, hit_link, "hit")
    if page:
        page_link = _link(state, page, "p")
        if link is not None and page_link.id != link.id:
            raise bad_request("invalid_query", "p names another link than the click in hit")
        link = page_link

    goal: Goal | None = None
    if goal_id:
        goal = state.goal(goal_id)
        if goal is None:
            raise bad_request("invalid_field", f"goal: {goal_id!r} is not a known goal")
        if link is not None and goal.project != link.project:
            raise bad_request("invalid_field", f"goal: {goal_id!r} belongs to another project than the link")
    elif link is None:
        raise bad_request("missing_field", "a vid postback needs p (the link id) or goal to name its project")
    else:
        goal = (state.goal(link.goal) if link.goal else None) or state.default_goal(link.project)
        if goal is None:
            raise bad_request(
                "no_goal",
                f"link {link.id!r} has no goal and project {link.project!r} no default goal: pass goal=",
            )

    return goal_postback(
        goal,
        ctx,
        visitor_id=vid,
        revenue=fields.amount(params.get("rev"), "rev"),
        currency=fields.currency(params.get("currency")),
        transaction_id=fields.text(params.get("tx"), "tx"),
        source_format="funnelflux",
        click_id=hit,
        link_id=link.id if link is not None else None,
        status=fields.text(params.get("status"), "status", max_len=50),
        disable_postbacks=fields.flag(params.get("disable_postbacks"), "disable_postbacks"),
    )
