from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.config import ConfigRecordError, ConfigState, Goal, Link, goal_record, link_record

NOW = datetime(2026, 1, 21, tzinfo=UTC)


def goal(gid: str, token: str, **kw) -> Goal:
    return Goal(
        id=gid,
        project=kw.pop("project", "p"),
        name="G",
        token=token,
        created_at=NOW,
        updated_at=kw.pop("updated_at", NOW),
        **kw,
    )


def gid(found: Goal | None) -> str | None:
    return found.id if found is not None else None


def applied(*records) -> ConfigState:
    state = ConfigState()
    for rec in records:
        state.apply(rec.key, rec.value)
    return state


def test_token_lookup_follows_updates_and_deletes():
    state = applied(goal_record(goal("g1", "secret-1")))
    assert gid(state.goal_by_token("secret-1")) == "g1"
    assert state.goal_by_token("secret-2") is None and state.goal_by_token("") is None
    state.apply(*goal_record(goal("g1", "secret-2")))
    assert state.goal_by_token("secret-1") is None and gid(state.goal_by_token("secret-2")) == "g1"
    state.apply("goal/g1", None)
    assert state.goal_by_token("secret-2") is None and state.goal("g1") is None


def test_default_goal_latest_flag_wins():
    later = NOW + timedelta(seconds=1)
    state = applied(
        goal_record(goal("a", "t1", default=True)),
        goal_record(goal("b", "t2", default=True, updated_at=later)),
        goal_record(goal("c", "t3", default=True, project="q")),
    )
    assert gid(state.default_goal("p")) == "b" and gid(state.default_goal("q")) == "c"
    assert state.default_goal("none") is None


def test_links_and_listing():
    link = Link(id="L1", project="p", url="https://a/", utm_source="s", created_at=NOW)
    state = applied(link_record(link), goal_record(goal("g", "t")))
    assert state.link("L1") == link and link.utm() == {"utm_source": "s"}
    assert [g.id for g in state.goals("p")] == ["g"] and state.links("other") == [] and len(state) == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("project/x", b"{}"),
        ("goal/g1", b"not json"),
        ("goal/g1", orjson.dumps({"kind": "goal", "v": 99, "data": {}})),
        ("goal/g1", orjson.dumps({"kind": "link", "v": 1, "data": {}})),
        ("goal/other", goal_record(goal("g1", "t")).value),
        ("goal/g1", orjson.dumps({"kind": "goal", "v": 1, "data": {"id": "g1"}})),
    ],
)
def test_unreadable_records_raise_and_leave_state_alone(key, value):
    state = ConfigState()
    with pytest.raises(ConfigRecordError):
        state.apply(key, value)
    assert len(state) == 0
    state.apply_logged(key, value, "test")
    assert state.bad_records == 1 and len(state) == 0
