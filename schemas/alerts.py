"""Alert rules (issue 14): what the admin API stores, and the transitions the evaluator emits.

A rule watches one scope of a project (the whole project, or a goal, a link, a campaign — any
combination) over a sliding window of stream time and moves through Grafana's states. The evaluator is
``processors.alerts``; the semantics are in docs/alerts.md. Pure: no I/O.

States: a rule rests in ``normal``, ``pending`` or ``firing``. ``resolved`` is never a resting state: it
is the ``to_state`` of the transition out of ``firing`` (the rule is ``normal`` again right after it,
and the resolved notification is sent for that transition).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]

MINUTE_S = 60
DAY_S = 86400
MIN_WINDOW_S = 10  # the shortest window (evaluation is per second of stream time)


class AlertKind(StrEnum):
    THRESHOLD = "threshold"  # metric above / below value
    CHANGE = "change"  # metric vs the same window one week earlier, above / below value (abs. or %)
    SPIKE = "spike"  # conversions >= min_count and > factor x the trailing 24 h baseline
    ABSENCE = "absence"  # no conversions for absence_s while the project has traffic


class AlertMetric(StrEnum):
    CONVERSIONS = "conversions"
    REVENUE = "revenue"
    CONVERSION_RATE = "conversion_rate"  # conversions / traffic events, a fraction (0.05 = 5 %)


class Op(StrEnum):
    ABOVE = "above"  # strictly greater
    BELOW = "below"  # strictly less


class ChangeMode(StrEnum):
    ABSOLUTE = "absolute"  # now - week ago
    PERCENT = "percent"  # (now - week ago) / week ago x 100; signed: a 30 % drop is -30


class NoDataPolicy(StrEnum):
    OK = "ok"  # no data counts as the condition being false
    ALERTING = "alerting"  # no data counts as the condition being true
    KEEP_STATE = "keep_state"  # the evaluation is skipped: state and timers unchanged


class AlertState(StrEnum):
    NORMAL = "normal"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"  # only as a transition's to_state (firing -> normal, notified)


class AlertScope(BaseModel):
    """What the rule counts: conversions of ``goal_id`` (any goal when unset) attributed to ``link_id``
    and ``campaign`` (any when unset). Traffic (the rate base) is scoped by link and campaign only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    goal_id: Name | None = None
    link_id: Name | None = None
    campaign: Name | None = None


class AlertChannels(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook_url: Url | None = None  # generic JSON body, signed, through the delivery engine
    slack_url: Url | None = None  # Slack-compatible incoming webhook


_CONDITION_FIELDS = ("op", "value", "change_mode", "min_count", "factor", "absence_s")
_USED_BY: dict[AlertKind, tuple[str, ...]] = {  # in _CONDITION_FIELDS order (stable messages)
    AlertKind.THRESHOLD: ("op", "value"),
    AlertKind.CHANGE: ("op", "value", "change_mode"),
    AlertKind.SPIKE: ("min_count", "factor"),
    AlertKind.ABSENCE: ("absence_s",),
}


def _absence_minutes_to_seconds(data: Any) -> Any:
    """Accept the former ``absence_minutes`` (whole minutes) as ``absence_s`` = 60 x it."""
    if isinstance(data, dict) and "absence_minutes" in data:
        data = dict(data)
        minutes = data.pop("absence_minutes")
        if "absence_s" in data and data["absence_s"] is not None:
            if minutes is not None:
                raise ValueError("give absence_s or absence_minutes, not both")
        elif minutes is None:
            data["absence_s"] = None
        elif isinstance(minutes, int) and not isinstance(minutes, bool):
            data["absence_s"] = minutes * MINUTE_S
        else:
            raise ValueError("absence_minutes must be a whole number (better: absence_s, in seconds)")
    return data


class _RuleBody(BaseModel):
    """The fields a user sets (create body and stored rule)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    scope: AlertScope = Field(default_factory=AlertScope)
    kind: AlertKind
    metric: AlertMetric = AlertMetric.CONVERSIONS
    op: Op | None = None  # threshold, change
    value: float | None = None  # threshold, change (signed for change)
    change_mode: ChangeMode | None = None  # change
    min_count: int | None = Field(default=None, ge=1)  # spike: N
    factor: float | None = Field(default=None, gt=0)  # spike: M
    absence_s: int | None = Field(default=None, ge=MIN_WINDOW_S, le=DAY_S)  # absence: N seconds
    window_s: int = Field(default=300, ge=MIN_WINDOW_S, le=DAY_S)  # not used by absence
    pending_s: int = Field(default=0, ge=0, le=DAY_S)
    keep_firing_s: int = Field(default=0, ge=0, le=DAY_S)
    no_data: NoDataPolicy = NoDataPolicy.OK
    snoozed_until: datetime | None = None
    enabled: bool = True
    channels: AlertChannels = Field(default_factory=AlertChannels)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _absence_minutes_to_seconds(data)

    @model_validator(mode="after")
    def _check(self) -> Self:
        check_rule_fields(self)
        return self

    def effective_window_s(self) -> int:
        """The sliding window the condition is computed over (absence: its own ``absence_s``)."""
        if self.kind is AlertKind.ABSENCE and self.absence_s is not None:
            return self.absence_s
        return self.window_s


def check_rule_fields(r: _RuleBody) -> None:
    """Raise ValueError with a message naming what is wrong with this combination of fields. Durations
    are whole seconds (ints); the bounds are on the fields."""
    used = _USED_BY[r.kind]
    missing = [n for n in used if getattr(r, n) is None]
    if missing:
        raise ValueError(f"a {r.kind.value} rule requires {' and '.join(missing)}")
    extra = [n for n in _CONDITION_FIELDS if n not in used and getattr(r, n) is not None]
    if extra:
        raise ValueError(f"{', '.join(extra)} not used by a {r.kind.value} rule")
    if r.metric is AlertMetric.CONVERSION_RATE and r.kind not in (AlertKind.THRESHOLD, AlertKind.CHANGE):
        raise ValueError("conversion_rate is only for threshold and change rules")
    if r.kind in (AlertKind.SPIKE, AlertKind.ABSENCE) and r.metric is not AlertMetric.CONVERSIONS:
        raise ValueError(f"a {r.kind.value} rule counts conversions (metric must be conversions)")
    if r.kind is AlertKind.ABSENCE and r.scope.goal_id is None:
        raise ValueError("an absence rule needs scope.goal_id (no conversions of which goal?)")


class AlertRuleSpec(_RuleBody):
    """``POST /api/v1/alerts`` body."""

    project: Name


class AlertRule(AlertRuleSpec):
    """A stored rule."""

    id: Name
    created_at: datetime
    updated_at: datetime


class AlertRulePatch(BaseModel):
    """``PATCH /api/v1/alerts/<id>`` body: the fields given replace the stored ones (``null`` clears an
    optional one). The result is validated as a whole by :func:`apply_patch`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name | None = None
    scope: AlertScope | None = None
    kind: AlertKind | None = None
    metric: AlertMetric | None = None
    op: Op | None = None
    value: float | None = None
    change_mode: ChangeMode | None = None
    min_count: int | None = Field(default=None, ge=1)
    factor: float | None = Field(default=None, gt=0)
    absence_s: int | None = Field(default=None, ge=MIN_WINDOW_S, le=DAY_S)
    window_s: int | None = Field(default=None, ge=MIN_WINDOW_S, le=DAY_S)
    pending_s: int | None = Field(default=None, ge=0, le=DAY_S)
    keep_firing_s: int | None = Field(default=None, ge=0, le=DAY_S)
    no_data: NoDataPolicy | None = None
    snoozed_until: datetime | None = None
    enabled: bool | None = None
    channels: AlertChannels | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _absence_minutes_to_seconds(data)


_NOT_NULLABLE = (
    "name",
    "scope",
    "kind",
    "metric",
    "window_s",
    "pending_s",
    "keep_firing_s",
    "no_data",
    "enabled",
    "channels",
)


def apply_patch(rule: AlertRule, patch: AlertRulePatch, now: datetime) -> AlertRule:
    """The rule with the patch's explicitly given fields applied; ValueError (pydantic's
    ValidationError) when the result is not a valid rule or a required field is set to null."""
    given = patch.model_dump(exclude_unset=True)
    nulls = [k for k in _NOT_NULLABLE if k in given and given[k] is None]
    if nulls:
        raise ValueError(f"{', '.join(nulls)} cannot be null")
    merged = rule.model_dump() | given | {"updated_at": now}
    return AlertRule.model_validate(merged)


def transition_id(rule_id: str, episode_started_ms: int, to_state: AlertState) -> str:
    """Deterministic: the same episode's same transition always has the same id (receivers dedupe)."""
    text = f"{rule_id}\x1f{episode_started_ms}\x1f{to_state.value}"
    return "alt_" + hashlib.sha256(text.encode()).hexdigest()[:32]


class AlertTransition(BaseModel):
    """One state change of one rule, at an evaluation tick of stream time (a whole second). ``notify`` is
    set for the transitions sent to the channels: into ``firing`` and into ``resolved`` (see
    docs/alerts.md, snooze)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    rule_id: str
    project: str
    from_state: AlertState
    to_state: AlertState
    at: datetime  # stream time of the evaluation (a tick: a whole second)
    value: float | None  # observed (None: no data)
    threshold: float | None  # what it was compared with (spike: the effective bound)
    episode_started_at: datetime  # when the rule left normal
    notify: bool = False


class AlertRuleRef(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    kind: AlertKind
    metric: AlertMetric
    scope: AlertScope
    window_s: int = Field(description="the sliding window the value was computed over")


ALERT_DATA_SCHEMA_PATH = "alert/v1"


class AlertData(BaseModel):
    """``data`` of ``com.trackpipe.alert.firing`` / ``.resolved`` (and the generic webhook body without
    its ``event``). For ``schemas.stream.schema_files`` to generate ``alert.v1.schema.json`` from."""

    model_config = ConfigDict(extra="allow", title="trackpipe alert transition v1")

    transition_id: str = Field(description="stable: the same transition always has the same id")
    episode_id: str = Field(description="<rule id>:<episode start, epoch ms>; firing and resolved share it")
    rule: AlertRuleRef
    project: str
    state: AlertState = Field(description="firing or resolved")
    from_state: AlertState
    value: float | None = Field(description="the observed value (null: no data)")
    threshold: float | None
    at: str = Field(description="stream time of the transition, RFC 3339 UTC")
    episode_started_at: str = Field(description="when the rule left normal, RFC 3339 UTC")


class TransitionSeen(BaseModel):
    """One of a rule's recent transitions, as the admin API and the dashboard show it."""

    model_config = ConfigDict(frozen=True)

    id: str
    from_state: AlertState
    to_state: AlertState
    at: datetime
    value: float | None
    threshold: float | None
    notified: bool


class AlertStatus(BaseModel):
    """Where a rule stands now (evaluated by this process: the embedded mode)."""

    model_config = ConfigDict(frozen=True)

    state: AlertState  # normal, pending or firing
    episode_started_at: datetime | None = None
    transitions: list[TransitionSeen] = Field(default_factory=list)  # newest first


class AlertStates(Protocol):
    """The wiring's view of the rules' live states (None for a rule not evaluated here)."""

    async def status(self, rule_ids: Sequence[str]) -> dict[str, AlertStatus]: ...
