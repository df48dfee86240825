"""Convert Experiences legacy third-party push (reference 002).

``GET /track/?c=ACCOUNT&p=PROJECT&e=EXP-VAR&g=G1,G2&ga=2`` pushes goal conversions, and
``t=GOAL|TXID|VALUE|COUNT`` (goals dot-separated) pushes a transaction; both may be mixed in one request.
The legacy push carries no visitor id. Decision (docs/decisions.md): an optional ``vid`` parameter is
honoured; without it the visitor is ``anon-`` plus a hash of client IP and user agent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from ingest.errors import bad_request
from ingest.formats import fields
from ingest.formats.context import RequestContext
from schemas.events import Event, EventType, ExperimentVariation
from schemas.ids import new_event_id

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_GOAL = re.compile(r"^[0-9]{1,20}$")
MAX_GOALS = 100
MAX_PRODUCTS = 1_000_000


def is_legacy_query(query: Mapping[str, str]) -> bool:
    return "c" in query or "p" in query


def _require_id(query: Mapping[str, str], name: str, what: str) -> str:
    value = query.get(name, "").strip()
    if not value:
        raise bad_request("missing_field", f"{name}: the {what} is required")
    if not _ID.match(value):
        raise bad_request("invalid_field", f"{name}: {value[:40]!r} is not a valid {what}")
    return value


def _goals(raw: str, sep: str, param: str) -> tuple[str, ...]:
    goals = tuple(g.strip() for g in raw.split(sep))
    if not goals or len(goals) > MAX_GOALS:
        raise bad_request("invalid_field", f"{param}: between 1 and {MAX_GOALS} goal ids expected")
    for g in goals:
        if not _GOAL.match(g):
            raise bad_request("invalid_field", f"{param}: goal id {g[:40]!r} is not a number")
    return goals


def _experiments(raw: str | None) -> tuple[ExperimentVariation, ...]:
    if not raw:
        return ()
    pairs = []
    for item in raw.split(","):
        exp, sep, var = item.strip().partition("-")
        if not sep or not _ID.match(exp) or not _ID.match(var):
            raise bad_request("invalid_field", f"e: {item[:40]!r} is not EXPERIMENT-VARIATION")
        pairs.append(ExperimentVariation(experiment_id=exp, variation_id=var))
    return tuple(pairs)


def anonymous_visitor(ctx: RequestContext) -> str:
    digest = hashlib.sha256(f"{ctx.client_ip or ''}|{ctx.user_agent}".encode()).hexdigest()
    return "anon-" + digest[:24]


def parse_legacy_query(query: Mapping[str, str], ctx: RequestContext) -> list[Event]:
    account = _require_id(query, "c", "account id")
    project = _require_id(query, "p", "project id")
    experiments = _experiments(query.get("e"))
    vid = fields.control_free(query.get("vid", ""), "vid").strip()
    if vid and len(vid) > 200:
        raise bad_request("invalid_field", "vid: longer than 200 characters")
    visitor = vid or anonymous_visitor(ctx)
    g, t = query.get("g"), query.get("t")
    if not g and not t:
        raise bad_request("missing_field", "g (goal ids) or t (transaction) is required")

    def make(kind: EventType, **kw: object) -> Event:
        return Event(
            event_id=new_event_id(),
            type=kind,
            received_at=ctx.received_at,
            occurred_at=ctx.received_at,
            account_id=account,
            project_id=project,
            visitor_id=visitor,
            experiments=experiments,
            client_ip=ctx.client_ip,
            user_agent=ctx.user_agent,
            source_format="convert_legacy",
            **kw,
        )

    events: list[Event] = []
    if g:
        goals = _goals(g, ",", "g")
        ga = query.get("ga")
        if ga is None:
            raise bad_request("invalid_field", "ga: the count of goals in g is required as a number")
        said = fields.whole_number(ga, "ga", max_value=1_000_000, what="the count of goals in g")
        if said != len(goals):
            raise bad_request("goal_count_mismatch", f"ga says {said} goals but g lists {len(goals)}")
        events.append(make(EventType.HIT_GOAL, goal_ids=goals))
    if t:
        parts = t.split("|")
        if len(parts) != 4:
            raise bad_request("invalid_field", "t: expected GOAL|TRANSACTION_ID|VALUE|PRODUCTS_COUNT")
        goal_part, txid, value, count = (p.strip() for p in parts)
        goals = _goals(goal_part, ".", "t")
        if not _ID.match(txid):
            raise bad_request("invalid_field", f"t: transaction id {txid[:40]!r} is not valid")
        revenue = fields.amount(value, "t: transaction value")
        if revenue is None:
            raise bad_request("invalid_field", "t: the transaction value is required")
        products = fields.whole_number(count, "t: products count", max_value=MAX_PRODUCTS)
        events.append(
            make(
                EventType.TRANSACTION,
                goal_ids=goals,
                transaction_id=txid,
                revenue=revenue,
                products_count=products,
            )
        )
    return events
