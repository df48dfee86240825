from datetime import UTC, datetime

import orjson
import pytest

from processors.alerts import notify
from processors.alerts.machine import RuleState, step
from processors.alerts.rules import Evaluation, Verdict
from schemas.alerts import AlertData, AlertRule, AlertState, AlertTransition
from schemas.stream.models import CloudEvent, StreamType

NOW = datetime(2026, 1, 5, tzinfo=UTC)
T0 = 1_767_571_200_000
RULE = AlertRule.model_validate(
    {
        "id": "r1",
        "project": "p1",
        "name": "Too many signups",
        "kind": "threshold",
        "op": "above",
        "value": 10,
        "scope": {"goal_id": "signup"},
        "created_at": NOW,
        "updated_at": NOW,
    }
)


def transitions() -> tuple[AlertTransition, AlertTransition]:
    st = RuleState()
    (firing,) = step(RULE, st, Evaluation(Verdict.TRUE, 12.0, 10.0), T0)
    (resolved,) = step(RULE, st, Evaluation(Verdict.FALSE, 3.0, 10.0), T0 + 60_000)
    return firing, resolved


def test_webhook_body() -> None:
    firing, resolved = transitions()
    body = orjson.loads(notify.webhook_body(firing, RULE))
    assert body["event"] == "alert.firing" and body["transition_id"] == firing.id
    assert (body["value"], body["threshold"], body["at"]) == (12.0, 10.0, "2026-01-05T00:00:00Z")
    assert body["rule"]["scope"] == {"goal_id": "signup", "link_id": None, "campaign": None}
    assert body["episode_id"] == f"r1:{T0}"
    later = orjson.loads(notify.webhook_body(resolved, RULE))
    assert (later["event"], later["episode_id"], later["state"]) == ("alert.resolved", f"r1:{T0}", "resolved")
    assert later["transition_id"] != body["transition_id"]


def test_slack_body() -> None:
    firing, resolved = transitions()
    body = orjson.loads(notify.slack_body(firing, RULE))
    assert body["text"].startswith(":rotating_light: [FIRING] Too many signups (p1)")
    assert "value 12, threshold 10" in body["text"]
    assert body["blocks"][0]["text"]["text"] == body["text"]
    assert any("goal_id=signup" in f["text"] for f in body["blocks"][1]["fields"])
    assert "[RESOLVED]" in orjson.loads(notify.slack_body(resolved, RULE))["text"]


def test_cloudevent_matches_the_stream_envelope() -> None:
    firing, resolved = transitions()
    for t, type_ in ((firing, StreamType.ALERT_FIRING), (resolved, StreamType.ALERT_RESOLVED)):
        ev = CloudEvent.model_validate_json(notify.cloudevent(t, RULE))
        assert (ev.id, ev.type, ev.subject, ev.source) == (t.id, type_, "r1", "/trackpipe/projects/p1")
        assert ev.dataschema == "/api/v1/schemas/alert/v1"
        assert ev.data["transition_id"] == t.id
        assert AlertData.model_validate(ev.data).model_dump(mode="json") == ev.data  # the documented shape


def test_pending_is_not_notified() -> None:
    pending = AlertTransition(
        id="x",
        rule_id="r1",
        project="p1",
        from_state=AlertState.NORMAL,
        to_state=AlertState.PENDING,
        at=NOW,
        value=None,
        threshold=None,
        episode_started_at=NOW,
    )
    with pytest.raises(ValueError, match="not notified"):
        notify.webhook_body(pending, RULE)
