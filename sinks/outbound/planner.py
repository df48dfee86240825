"""Planning goal webhooks for a batch of conversion rows (pure: no I/O, the clock and lookups passed in).

The runtime calls :func:`plan` with the batch's conversion rows, the stored digests of their
conversions and a goal lookup, and stores what it returns (the changed digests and the due deliveries)
in the transaction that commits the batch. Only goals with a ``postback_url`` and a signing key ring
are planned; other conversions keep no digest (a goal that gets a URL later announces its next change
as ``conversion.tracked``).

The delivery id is the ``webhook-id`` (:func:`events.webhook_id`), deterministic from the row: a batch
replayed after a crash plans the same ids with the same bodies, so storing a due delivery is an insert
that ignores an id already there.

Traffic-source S2S postbacks (:func:`plan_postbacks`) are planned the same way from the rows attributed
to a link with a ``postback_template``: :func:`templates.decide_postback` with the link's rule, the
conversion's ``attributed_external_click_id`` and the stored :class:`FiredDigest` of that conversion and
link (key :data:`PostbackKey`, stored apart from the webhook digests). The delivery id (``pb_...``) is
deterministic from the row and the link, so a replay plans the same ids with the same requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from schemas.config import Goal, Link
from schemas.conversion_facts import ConversionFacts
from schemas.outbound.postbacks import (
    Method,
    parse_status_filter,
    parse_status_map,
    parse_template,
)
from schemas.outbound.ssrf import AllowList
from sinks.outbound.events import Digest, Key, Send, WebhookEvent, conversion_key, decide_rows
from sinks.outbound.templates import Fire, FiredDigest, PostbackRule, decide_postback

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


def planned_rows(
    rows: Iterable[ConversionFacts], goal_of: GoalOf
) -> tuple[list[ConversionFacts], dict[str, Goal]]:
    """The rows whose goal announces conversions (a URL and a key ring), and those goals by
    ``project\\x1fgoal``."""
    goals: dict[str, Goal] = {}
    skipped: set[str] = set()
    kept: list[ConversionFacts] = []
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


def plan(
    rows: Iterable[ConversionFacts], digests: Mapping[Key, Digest], goal_of: GoalOf, now: datetime
) -> Plan:
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


def keys_of(rows: Iterable[ConversionFacts]) -> list[Key]:
    """The conversions of ``rows`` (each once), whose stored digests :func:`plan` needs."""
    return list(dict.fromkeys(conversion_key(r) for r in rows))


# --- traffic-source S2S postbacks -----------------------------------------------------------------------

PostbackKey = tuple[str, str, str, str]  # (project, goal, conversion key, link)

#: ``rule_of(project, link_id)``: the link's postback rule as configured now, or None (unknown link,
#: another project's, no template, or a template that no longer parses).
RuleOf = Callable[[str, str], PostbackRule | None]


@dataclass(frozen=True, slots=True)
class DuePostback:
    """An S2S postback to deliver: the exact request. ``delivery_id`` is ``pb_...``."""

    delivery_id: str
    project: str
    goal_id: str
    link_id: str
    method: Method
    url: str
    body: bytes  # b"" for GET
    created_at: datetime
    next_at: datetime


@dataclass(frozen=True, slots=True)
class PostbackPlan:
    digests: dict[PostbackKey, FiredDigest]  # changed digests, to store
    due: list[DuePostback]  # in row order; one id at most once

    @property
    def is_empty(self) -> bool:
        return not self.digests and not self.due


def postback_rule(link: Link, allow: AllowList) -> PostbackRule | None:
    """The link's rule, or None when it has no template. Raises ``TemplateError`` for a setting that
    does not parse (checked when saved; the allow-list may have narrowed since)."""
    if not link.postback_template:
        return None
    return PostbackRule(
        link.id,
        parse_template(link.postback_template, link.postback_method, allow=allow),
        parse_status_filter(link.postback_statuses),
        parse_status_map(link.postback_status_map),
        link.postback_updates,
    )


def postback_key(row: ConversionFacts) -> PostbackKey:
    return (row.project_id, row.goal_id, row.conversion_key, row.attributed_link_id)


def postback_keys_of(rows: Iterable[ConversionFacts]) -> list[PostbackKey]:
    """The (conversion, link) pairs of ``rows`` attributed to a link (each once), whose stored digests
    :func:`plan_postbacks` needs."""
    return list(dict.fromkeys(postback_key(r) for r in rows if r.attributed_link_id))


def plan_postbacks(
    rows: Iterable[ConversionFacts], fired: Mapping[PostbackKey, FiredDigest], rule_of: RuleOf, now: datetime
) -> PostbackPlan:
    """The digests to store and the S2S postbacks due at ``now`` for ``rows`` (arrival order).
    ``fired`` holds the stored digest of each (conversion, link) among ``rows`` that has one."""
    rules: dict[tuple[str, str], PostbackRule | None] = {}
    current: dict[PostbackKey, FiredDigest] = {}
    changed: dict[PostbackKey, FiredDigest] = {}
    due: list[DuePostback] = []
    seen: set[str] = set()
    for row in rows:
        if not row.attributed_link_id:
            continue
        ref = (row.project_id, row.attributed_link_id)
        if ref not in rules:
            rules[ref] = rule_of(*ref)
        rule = rules[ref]
        if rule is None:
            continue
        key = postback_key(row)
        previous = current.get(key, fired.get(key))
        outcome = decide_postback(row, rule, row.attributed_external_click_id, previous)
        if outcome.digest != previous:
            current[key] = changed[key] = outcome.digest
        if not isinstance(outcome, Fire) or outcome.delivery_id in seen:
            continue
        seen.add(outcome.delivery_id)
        req = outcome.request
        due.append(
            DuePostback(
                outcome.delivery_id,
                row.project_id,
                row.goal_id,
                rule.link_id,
                req.method,
                req.url,
                req.body or b"",
                now,
                now,
            )
        )
    return PostbackPlan(changed, due)
