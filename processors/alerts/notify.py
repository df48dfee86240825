"""Pure builders of what a transition sends: the generic webhook body, a Slack-compatible incoming-webhook
body and the public stream's CloudEvent (the same envelope as ``sinks.stream.cloudevents.cloudevent``,
built here because processors do not import sinks). The wiring signs, queues and sends them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.alerts import ALERT_DATA_SCHEMA_PATH, AlertRule, AlertState, AlertTransition
from schemas.instants import epoch_ms
from schemas.stream.models import SOURCE_PREFIX, SPEC_VERSION, StreamType

SCHEMA_URL_PREFIX = "/api/v1/schemas/"


def iso_utc(at: datetime) -> str:
    """``2026-01-21T12:00:00Z`` (milliseconds when there are any), like the conversion stream's."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    spec = "milliseconds" if at.microsecond else "seconds"
    return at.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def event_name(t: AlertTransition) -> str:
    """``alert.firing`` or ``alert.resolved``; ValueError for a transition that notifies nobody."""
    if t.to_state is AlertState.FIRING:
        return "alert.firing"
    if t.to_state is AlertState.RESOLVED:
        return "alert.resolved"
    raise ValueError(f"a transition into {t.to_state.value} is not notified")


def episode_id(t: AlertTransition) -> str:
    return f"{t.rule_id}:{epoch_ms(t.episode_started_at)}"


def alert_data(t: AlertTransition, rule: AlertRule) -> dict[str, Any]:
    """What every channel says about the transition (the webhook body minus ``event``, the CloudEvent's
    ``data``)."""
    return {
        "transition_id": t.id,
        "episode_id": episode_id(t),
        "rule": {
            "id": rule.id,
            "name": rule.name,
            "kind": rule.kind.value,
            "metric": rule.metric.value,
            "scope": rule.scope.model_dump(),
            "window_s": rule.effective_window_s(),
        },
        "project": t.project,
        "state": t.to_state.value,
        "from_state": t.from_state.value,
        "value": t.value,
        "threshold": t.threshold,
        "at": iso_utc(t.at),
        "episode_started_at": iso_utc(t.episode_started_at),
    }


def webhook_body(t: AlertTransition, rule: AlertRule) -> bytes:
    """The generic webhook's JSON body."""
    return orjson.dumps({"event": event_name(t), **alert_data(t, rule)})


def _number(v: float | None) -> str:
    if v is None:
        return "no data"
    return f"{v:.4g}"


def slack_body(t: AlertTransition, rule: AlertRule) -> bytes:
    """A Slack incoming-webhook body: ``text`` (the fallback) and ``blocks``."""
    name = event_name(t)
    emoji = ":rotating_light:" if name == "alert.firing" else ":white_check_mark:"
    verb = "FIRING" if name == "alert.firing" else "RESOLVED"
    observed = f"value {_number(t.value)}, threshold {_number(t.threshold)}"
    text = f"{emoji} [{verb}] {rule.name} ({t.project}): {observed}"
    scope = ", ".join(f"{k}={v}" for k, v in rule.scope.model_dump().items() if v) or "whole project"
    fields = [
        f"*Rule*\n{rule.name} ({rule.kind.value}, {rule.metric.value})",
        f"*Scope*\n{scope}",
        f"*Value*\n{_number(t.value)}",
        f"*Threshold*\n{_number(t.threshold)}",
        f"*At*\n{iso_utc(t.at)}",
        f"*Since*\n{iso_utc(t.episode_started_at)}",
    ]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"transition `{t.id}`"}]},
    ]
    return orjson.dumps({"text": text, "blocks": blocks})


def stream_type(t: AlertTransition) -> StreamType:
    return StreamType.ALERT_FIRING if event_name(t) == "alert.firing" else StreamType.ALERT_RESOLVED


def cloudevent(t: AlertTransition, rule: AlertRule) -> bytes:
    """The public stream's message: id = the transition id, subject = the rule id, time = the
    transition's stream time."""
    return orjson.dumps(
        {
            "specversion": SPEC_VERSION,
            "id": t.id,
            "source": SOURCE_PREFIX + t.project,
            "type": stream_type(t).value,
            "time": iso_utc(t.at),
            "subject": rule.id,
            "datacontenttype": "application/json",
            "dataschema": SCHEMA_URL_PREFIX + ALERT_DATA_SCHEMA_PATH,
            "data": alert_data(t, rule),
        }
    )
