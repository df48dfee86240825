"""Planning goal webhooks for a batch of conversion rows (pure: no I/O, the clock and lookups passed in).

The runtime calls :func:`plan` with the batch's conversion rows, the stored digests of their
conversions and a goal lookup, and stores what it returns (the changed digests and the due deliveries)
in the transaction that commits the batch. Only goals with a ``postback_url`` and a signing key ring
are planned; other conversions keep no digest (a goal that gets a URL later announces its next change
as ``conversion.tracked``).

The delivery id is the ``webhook-id`` (:func:`events.webhook_id`), deterministic from the row: a batch
replayed after a crash plans the same ids with the same bodies, so storing a due delivery is an insert
that ignores an id already there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from schemas.config import Goal
from schemas.rows import Conversion
from sinks.outbound.events import Digest, Key, Send, WebhookEvent, conversion_key, decide_rows

#: ``goal_of(project, goal_id)``: the goal as configured now, or None (unknown, or another project's).
GoalOf = Callable[[str, str], Goal | None]


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A webhook to deliver: its exact bytes and where they go. ``delivery_id`` is the webhook-id."""

    delivery_id: str
    project: str
    goal_id: str
    event: WebhookEvent
    url: str
    body: bytes
    created_at: datetime
    next_at: datetime


@dataclass(frozen=True, slots=True)
class Plan:
    digests: dict[Key, Digest]  # changed digests, to store
    due: list[DueDelivery]  # in row order; one id at most once

    @property
    def is_empty(self) -> bool:
        return not self.digests and not self.due


def planned_rows(rows: Iterable[Conversion], goal_of: GoalOf) -> tuple[list[Conversion], dict[str, Goal]]:
    """The rows whose goal announces conversions (a URL and a key ring), and those goals by
    ``project\\x1fgoal``."""
    goals: dict[str, Goal] = {}
    skipped: set[str] = set()
    kept: list[Conversion] = []
    for row in rows:
        ref = f"{row.project_id}\x1f{row.goal_id}"
        if ref in skipped:
            continue
        if ref not in goals:
            goal = goal_of(row.project_id, row.goal_id)
            if goal is None or not goal.postback_url or goal.key_ring() is None:
                skipped.add(ref)
                continue
            goals[ref] = goal
        kept.append(row)
    return kept, goals


def plan(rows: Iterable[Conversion], digests: Mapping[Key, Digest], goal_of: GoalOf, now: datetime) -> Plan:
    """The digests to store and the deliveries due at ``now`` for ``rows`` (arrival order).
    ``digests`` holds the stored digest of each conversion among ``rows`` that has one."""
    kept, goals = planned_rows(rows, goal_of)
    decided, changed = decide_rows(kept, digests)
    due: list[DueDelivery] = []
    seen: set[str] = set()
    for d in decided:
        if not isinstance(d.outcome, Send):
            continue
        message = d.outcome.message
        if message.webhook_id in seen:
            continue
        seen.add(message.webhook_id)
        goal = goals[f"{d.row.project_id}\x1f{d.row.goal_id}"]
        assert goal.postback_url is not None
        due.append(
            DueDelivery(
                message.webhook_id,
                d.row.project_id,
                d.row.goal_id,
                message.event,
                goal.postback_url,
                message.body,
                now,
                now,
            )
        )
    return Plan(changed, due)


def keys_of(rows: Iterable[Conversion]) -> list[Key]:
    """The conversions of ``rows`` (each once), whose stored digests :func:`plan` needs."""
    return list(dict.fromkeys(conversion_key(r) for r in rows))
