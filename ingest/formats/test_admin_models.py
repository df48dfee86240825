from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from ingest.errors import Rejected
from ingest.formats.admin_models import (
    GoalCreate,
    GoalPatch,
    checked_url,
    new_goal,
    others_losing_default,
    patched_goal,
    unwrap,
)
from schemas.config import ConfigState, goal_record

NOW = datetime(2026, 1, 21, tzinfo=UTC)


def test_reference_goal_wrapper_and_defaults():
    spec = GoalCreate.model_validate(
        unwrap(
            {"goal": {"name": "Q1 Sales", "goal_type": "purchase", "value": 99.00, "currency": "usd"}}, "goal"
        )
    )
    goal = new_goal(spec, NOW, "g1", "tok")
    assert goal.project == "default" and goal.value == Decimal("99") and goal.currency == "USD"
    assert goal.attribution_window_days == 30 and goal.goal_type == "purchase"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "//evil.example/",
        "https://a@evil.example/",
        "https://x y/",
        "ftp://h/",
        "https:///p",
        "https://h/" + "x" * 3000,
    ],
)
def test_unsafe_urls_are_refused(url):
    with pytest.raises(ValueError):
        checked_url(url, "url")


def test_patch_keeps_token_and_refuses_nulls_where_required():
    goal = new_goal(GoalCreate(name="A"), NOW, "g1", "tok")
    later = NOW + timedelta(hours=1)
    patched = patched_goal(goal, GoalPatch.model_validate({"value": 1, "currency": None}), later)
    assert patched.token == "tok" and patched.value == 1 and patched.updated_at == later
    with pytest.raises(Rejected, match="name"):
        patched_goal(goal, GoalPatch.model_validate({"name": None}), later)
    with pytest.raises(ValidationError):
        GoalPatch.model_validate({"project": "other"})


def test_one_default_goal_per_project():
    state = ConfigState()
    old = new_goal(GoalCreate(name="Old", default=True), NOW, "g-old", "t1")
    rec = goal_record(old)
    state.apply(rec.key, rec.value)
    new = new_goal(GoalCreate(name="New", default=True), NOW, "g-new", "t2")
    (demoted,) = others_losing_default(state, new, NOW)
    assert demoted.id == "g-old" and demoted.default is False
    assert others_losing_default(state, new_goal(GoalCreate(name="X"), NOW, "x", "t3"), NOW) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "A", "value": "1_000"}, "value"),
        ({"name": "A", "value": "\u0661\u0662"}, "value"),
        ({"name": "A", "value": "nan"}, "value"),
        ({"name": "A", "currency": "ZZZ"}, "currency"),
        ({"name": "A", "currency": "NaN"}, "currency"),
        ({"name": "A\u202e"}, "name"),
        ({"name": "A\x00"}, "name"),
    ],
)
@pytest.mark.parametrize("model", [GoalCreate, GoalPatch])
def test_goal_value_currency_and_name_are_checked_like_events(spec, field, model):
    with pytest.raises(ValidationError) as exc:
        model.model_validate(spec)
    assert exc.value.errors()[0]["loc"][0] == field


def test_goal_currency_is_normalised():
    assert GoalCreate.model_validate({"name": "A", "currency": " eur ", "value": "12.50"}).currency == "EUR"
