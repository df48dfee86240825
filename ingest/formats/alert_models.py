"""Wire side of the alert rules' admin API (issue 14): the create body, and the checks the pure rule model
(``schemas.alerts``) leaves to the edge. Pure: no I/O.

The create body is :class:`schemas.alerts.AlertRuleSpec` with the admin API's conventions for goals and
links: ``project`` may be omitted (``default``) and follows the same id pattern, names carry no control
characters. A rule is stored as :class:`schemas.config.StoredAlertRule`: the rule and the signing key
ring of its webhook channel (the ``whsec_`` secret is shown in the create and rotate answers only).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ingest.errors import Rejected, bad_request
from ingest.formats.admin_models import (
    DEFAULT_PROJECT,
    Name,
    ProjectId,
    refused_destination,
    validation_rejection,
)
from schemas.alerts import AlertRule, AlertRulePatch, AlertRuleSpec, apply_patch
from schemas.config import ConfigState, StoredAlertRule, signing_key_records
from schemas.outbound.signing import KeyRing, WebhookSecret
from schemas.outbound.ssrf import AllowList

MAX_COUNT = 10**9  # spike min_count: far above any window's conversions, and stored as a JSON integer


class AlertCreate(AlertRuleSpec):
    """``POST /api/v1/alerts`` body (flat or ``{"alert": {...}}``)."""

    project: ProjectId = DEFAULT_PROJECT
    name: Name


def new_alert(spec: AlertRuleSpec, now: datetime, alert_id: str, secret: WebhookSecret) -> StoredAlertRule:
    """A new rule with its first webhook signing secret (returned once, in the creation's answer)."""
    rule = AlertRule(id=alert_id, created_at=now, updated_at=now, **spec.model_dump())
    return stored(rule, signing_key_records(KeyRing.new(secret, now)))


def stored(rule: AlertRule, keys: Any) -> StoredAlertRule:
    return StoredAlertRule.model_validate({**rule.model_dump(), "signing_keys": keys})


def patched_alert(current: StoredAlertRule, patch: AlertRulePatch, now: datetime) -> StoredAlertRule:
    """The patch applied and the result validated as a whole; a 400 naming the field when it is not a
    valid rule."""
    try:
        rule = apply_patch(current.rule(), patch, now)
    except ValidationError as exc:
        raise validation_rejection(exc) from None
    except ValueError as exc:
        raise bad_request("invalid_field", str(exc)) from None
    return stored(rule, current.signing_keys)


def rotated_alert(
    rule: StoredAlertRule, secret: WebhookSecret, now: datetime, grace: timedelta
) -> StoredAlertRule:
    """``secret`` becomes the rule's signing secret; the previous one signs for ``grace`` more."""
    ring = rule.key_ring()
    ring = KeyRing.new(secret, now) if ring is None else ring.rotate(secret, now, grace)
    return rule.model_copy(update={"signing_keys": signing_key_records(ring), "updated_at": now})


def _invalid(field: str, problem: str) -> Rejected:
    return bad_request("invalid_field", f"{field}: {problem}", [{"field": field, "problem": problem}])


def rule_problem(
    rule: AlertRule, state: ConfigState, allow: AllowList, *, scope: bool = True, channels: bool = True
) -> Rejected | None:
    """What the rule model does not check and the edge must before storing: finite numbers (the record
    is JSON), a time zone on ``snoozed_until``, scope ids of known goals and links of the rule's project
    (``scope``), channel URLs through the SSRF guard (``channels``). None when the rule can be stored."""
    for name in ("value", "factor"):
        number = getattr(rule, name)
        if number is not None and not math.isfinite(number):
            return _invalid(name, "must be a finite number")
    if rule.min_count is not None and rule.min_count > MAX_COUNT:
        return _invalid("min_count", f"must be at most {MAX_COUNT}")
    if rule.snoozed_until is not None and rule.snoozed_until.utcoffset() is None:
        return _invalid("snoozed_until", "needs a time zone (e.g. 2026-01-01T12:00:00Z)")
    if scope:
        goal_id, link_id = rule.scope.goal_id, rule.scope.link_id
        if goal_id is not None:
            goal = state.goal(goal_id)
            if goal is None or goal.project != rule.project:
                return _invalid("scope.goal_id", f"{goal_id!r} is not a goal of project {rule.project!r}")
        if link_id is not None:
            link = state.link(link_id)
            if link is None or link.project != rule.project:
                return _invalid("scope.link_id", f"{link_id!r} is not a link of project {rule.project!r}")
    if channels:
        for name in ("webhook_url", "slack_url"):
            url = getattr(rule.channels, name)
            if url is not None:
                refused = refused_destination(f"channels.{name}", url, allow)
                if refused is not None:
                    return refused
    return None


def alert_answer(rule: StoredAlertRule) -> dict[str, Any]:
    """The rule as the admin API shows it: its fields, never its secrets."""
    return rule.model_dump(mode="json", exclude={"signing_keys"})
