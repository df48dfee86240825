from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.alerts import (
    AlertKind,
    AlertRule,
    AlertRulePatch,
    AlertRuleSpec,
    AlertState,
    apply_patch,
    transition_id,
)

NOW = datetime(2026, 1, 5, tzinfo=UTC)


def rule(**kw: object) -> AlertRule:
    base: dict[str, object] = {
        "id": "r1",
        "project": "p1",
        "name": "many",
        "kind": "threshold",
        "op": "above",
        "value": 5,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return AlertRule.model_validate(base | kw)


def test_a_valid_rule_of_each_kind() -> None:
    assert rule().kind is AlertKind.THRESHOLD
    assert rule(kind="change", change_mode="percent", value=-30, op="below").value == -30
    spike = rule(kind="spike", op=None, value=None, min_count=10, factor=3)
    assert spike.effective_window_s() == 300
    absence = rule(kind="absence", op=None, value=None, absence_s=45, scope={"goal_id": "g"})
    assert absence.effective_window_s() == 45
    assert rule(window_s=10, pending_s=5, keep_firing_s=1).window_s == 10  # whole seconds


def test_absence_minutes_is_still_accepted_as_seconds() -> None:
    legacy = rule(kind="absence", op=None, value=None, absence_minutes=15, scope={"goal_id": "g"})
    assert (legacy.absence_s, legacy.effective_window_s()) == (900, 900)
    assert "absence_minutes" not in legacy.model_dump()
    with pytest.raises(ValidationError, match="not both"):
        rule(kind="absence", op=None, value=None, absence_minutes=1, absence_s=60, scope={"goal_id": "g"})
    patched = apply_patch(legacy, AlertRulePatch.model_validate({"absence_minutes": 2}), NOW)
    assert patched.absence_s == 120


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "spike", "op": None, "value": None, "factor": 3}, "spike rule requires min_count"),
        ({"kind": "spike", "op": None, "value": None, "min_count": 3}, "spike rule requires factor"),
        ({"kind": "change", "value": None, "change_mode": "absolute"}, "change rule requires value"),
        ({"kind": "change"}, "change rule requires change_mode"),
        ({"op": None, "value": None}, "threshold rule requires op and value"),
        ({"value": None}, "threshold rule requires value"),
        ({"min_count": 3}, "min_count not used by a threshold rule"),
        (
            {"kind": "spike", "op": None, "value": None, "min_count": 3, "factor": 2, "metric": "revenue"},
            "counts conversions",
        ),
        (
            {
                "kind": "spike",
                "op": None,
                "value": None,
                "min_count": 3,
                "factor": 2,
                "metric": "conversion_rate",
            },
            "conversion_rate is only for threshold and change",
        ),
        ({"kind": "absence", "op": None, "value": None, "absence_s": 300}, "needs scope.goal_id"),
        ({"kind": "absence", "op": None, "value": None, "scope": {"goal_id": "g"}}, "requires absence_s"),
        ({"absence_s": 60}, "absence_s not used by a threshold rule"),
        ({"window_s": 9}, "greater than or equal to 10"),
        ({"window_s": 86_401}, "less than or equal to 86400"),
        ({"window_s": 30.5}, "window_s"),
        ({"pending_s": -1}, "greater than or equal to 0"),
        (
            {"kind": "absence", "op": None, "value": None, "absence_s": 5, "scope": {"goal_id": "g"}},
            "greater than or equal to 10",
        ),
        ({"no_data": "maybe"}, "no_data"),
        ({"unknown": 1}, "Extra inputs"),
    ],
)
def test_invalid_rules_say_why(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule(**fields)


def test_spec_is_the_create_body() -> None:
    spec = AlertRuleSpec.model_validate(
        {
            "project": "p1",
            "name": "x",
            "kind": "threshold",
            "op": "below",
            "value": 0.02,
            "metric": "conversion_rate",
            "scope": {"link_id": "l1"},
            "channels": {"slack_url": "https://s"},
        }
    )
    assert (spec.project, spec.scope.link_id, spec.channels.slack_url) == ("p1", "l1", "https://s")


def test_spec_rejects_an_incomplete_rule() -> None:
    with pytest.raises(ValidationError, match="requires op"):
        AlertRuleSpec.model_validate({"project": "p", "name": "x", "kind": "threshold", "value": 1})


def test_patch_applies_given_fields_and_revalidates() -> None:
    r = rule(snoozed_until=NOW)
    later = datetime(2026, 1, 6, tzinfo=UTC)
    patched = apply_patch(r, AlertRulePatch.model_validate({"value": 9, "snoozed_until": None}), later)
    assert (patched.value, patched.snoozed_until, patched.updated_at) == (9, None, later)
    assert patched.created_at == NOW and patched.name == r.name
    with pytest.raises(ValidationError, match="spike rule requires min_count and factor"):
        apply_patch(r, AlertRulePatch.model_validate({"kind": "spike", "op": None, "value": None}), later)
    with pytest.raises(ValueError, match="name cannot be null"):
        apply_patch(r, AlertRulePatch.model_validate({"name": None}), later)


def test_transition_ids_are_stable_and_distinct() -> None:
    a = transition_id("r1", 60_000, AlertState.FIRING)
    assert a == transition_id("r1", 60_000, AlertState.FIRING)
    others = {
        transition_id("r1", 120_000, AlertState.FIRING),
        transition_id("r2", 60_000, AlertState.FIRING),
        transition_id("r1", 60_000, AlertState.RESOLVED),
    }
    assert a not in others and len(others) == 3
