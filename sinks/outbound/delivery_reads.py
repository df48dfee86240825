"""Reading the delivery log (``delivery_attempts``): each delivery's latest state and its attempts.

A delivery's state is the row of its latest attempt (``argMax`` by ``(at, attempt)``). Every value is
bound server-side (``{name:Type}``); an unset filter is bound as ``''`` (or the epoch) and the fixed SQL
lets it match everything, so the text never varies with the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from schemas.outbound.deliveries import (
    MAX_ATTEMPTS_SHOWN,
    MAX_LIMIT,
    RETRIABLE,
    DeliveriesList,
    DeliveriesQuery,
    DeliveryAttempt,
    DeliveryEntry,
    RetryFilter,
)
from sinks.backend import ClickHouseBackend

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = "(at, attempt)"

_DELIVERIES = f"""
SELECT
    delivery_id,
    argMax(project, {_LATEST}), argMax(goal_id, {_LATEST}), argMax(link_id, {_LATEST}),
    argMax(kind, {_LATEST}), argMax(event, {_LATEST}), argMax(method, {_LATEST}), argMax(url, {_LATEST}),
    argMax(status, {_LATEST}) AS last_status, max(attempt), min(created_at), max(at) AS last_at,
    argMax(tuple(next_at), {_LATEST}).1, argMax(dead_reason, {_LATEST})
FROM delivery_attempts
WHERE ({{project:String}} = '' OR project = {{project:String}})
  AND ({{goal:String}} = '' OR goal_id = {{goal:String}})
  AND ({{link:String}} = '' OR link_id = {{link:String}})
  AND (empty({{ids:Array(String)}}) OR has({{ids:Array(String)}}, delivery_id))
GROUP BY delivery_id
HAVING has({{statuses:Array(String)}}, last_status) AND last_at >= {{since:DateTime64(3, 'UTC')}}
ORDER BY last_at DESC, delivery_id
LIMIT {{limit:UInt32}}
"""

_ATTEMPTS = """
SELECT delivery_id, attempt, at, status, status_code, latency_ms, error, response_body, dead_reason, next_at
FROM delivery_attempts
WHERE has({ids:Array(String)}, delivery_id)
ORDER BY delivery_id, at DESC, attempt DESC
LIMIT {per:UInt32} BY delivery_id
"""

ALL_STATUSES = ("pending", "delivered", "failed", "dead")


def _aware(value: Any) -> datetime:
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _params(query: DeliveriesQuery, ids: Sequence[str], statuses: Sequence[str]) -> dict[str, Any]:
    return {
        "project": query.project or "",
        "goal": query.goal or "",
        "link": query.link or "",
        "ids": list(ids),
        "statuses": list(statuses),
        "since": (query.since or _EPOCH).astimezone(UTC),
        "limit": query.limit,
    }


def deliveries(backend: ClickHouseBackend, query: DeliveriesQuery, ids: Sequence[str] = ()) -> DeliveriesList:
    statuses = (query.status,) if query.status else ALL_STATUSES
    rows = backend.query(_DELIVERIES, _params(query, ids, statuses))
    if not rows:
        return DeliveriesList(deliveries=[])
    found = [str(r[0]) for r in rows]
    attempts: dict[str, list[DeliveryAttempt]] = {}
    for a in backend.query(_ATTEMPTS, {"ids": found, "per": MAX_ATTEMPTS_SHOWN}):
        attempts.setdefault(str(a[0]), []).append(
            DeliveryAttempt(
                attempt=int(a[1]),
                at=_aware(a[2]),
                status=a[3],
                status_code=int(a[4]) or None,
                latency_ms=int(a[5]),
                error=str(a[6]) or None,
                response_body=str(a[7]),
                dead_reason=str(a[8]) or None,
                next_at=None if a[9] is None else _aware(a[9]),
            )
        )
    entries = [
        DeliveryEntry(
            id=str(r[0]),
            project=str(r[1]),
            goal_id=str(r[2]),
            link_id=str(r[3]),
            kind=r[4],
            event=str(r[5]),
            method=str(r[6]),
            url=str(r[7]),
            status=r[8],
            attempts=int(r[9]),
            created_at=_aware(r[10]),
            last_attempt_at=_aware(r[11]),
            next_at=None if r[12] is None else _aware(r[12]),
            dead_reason=str(r[13]) or None,
            attempts_log=list(reversed(attempts.get(str(r[0]), []))),
        )
        for r in rows
    ]
    return DeliveriesList(deliveries=entries)


def retriable(backend: ClickHouseBackend, query: RetryFilter) -> list[str]:
    """The failed or dead deliveries matching a bulk retry's filters (at most ``query.limit``)."""
    as_list = DeliveriesQuery(
        project=query.project, goal=query.goal, link=query.link, since=query.since, limit=MAX_LIMIT
    )
    statuses = (query.status,) if query.status else RETRIABLE
    params = {**_params(as_list, (), statuses), "limit": query.limit}
    return [str(r[0]) for r in backend.query(_DELIVERIES, params)]
