"""Models of the edge's own JSON answers, for ``/openapi.json`` (the handlers build the same shapes;
schemathesis checks every answer against them, tests/integration/test_inputs_openapi.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from schemas.alerts import AlertRule, AlertStatus
from schemas.config import GoalFields, Link


class Problem(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class Error(BaseModel):
    """Every 4xx/5xx (but the pixel's and Pushwoosh's) names the problem."""

    error: Problem


class Accepted(BaseModel):
    status: Literal["ok"]
    accepted: int
    event_ids: list[str]


class ConversionAccepted(Accepted):
    conversion_id: str
    goal_id: str


class PushwooshAnswer(BaseModel):
    """Pushwoosh's shape, errors too: ``response`` holds ``{"error": ...}`` then."""

    status_code: int
    status_message: str
    response: dict[str, Any] | None


class GoalAnswer(GoalFields):
    value: float | None = None  # type: ignore[assignment]  # a JSON number in the answer
    track_url: str  # POST conversions here (GET: the pixel)


class GoalCreated(GoalAnswer):
    signing_secret: str  # whsec_...: verifies this goal's webhooks; shown here once, never again


class SecretRotated(BaseModel):
    goal_id: str
    signing_secret: str  # the new whsec_... secret, shown once
    previous_expires_at: datetime | None  # until then the previous secret signs too (None: there was none)


class AlertCreated(AlertRule):
    signing_secret: str  # whsec_...: verifies this rule's webhook notifications; shown here once


class AlertWithStatus(AlertRule):
    status: AlertStatus | None = None  # where it stands now; None: not evaluated by this process


class Alerts(BaseModel):
    alerts: list[AlertWithStatus]


class AlertSecretRotated(BaseModel):
    alert_id: str
    signing_secret: str  # the new whsec_... secret, shown once
    previous_expires_at: datetime | None  # until then the previous secret signs too (None: there was none)


class LinkAnswer(Link):
    tracking_url: str  # GET /c/{id}: records a click, 302


class Goals(BaseModel):
    goals: list[GoalAnswer]


class Links(BaseModel):
    links: list[LinkAnswer]


class Health(BaseModel):
    model_config = {"extra": "allow"}

    status: str
    problems: list[str] | None = None
