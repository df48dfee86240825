from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.alerts import AlertKind, AlertRule, AlertScope, Op
from schemas.config import (
    ConfigRecord,
    ConfigRecordError,
    ConfigState,
    ConfigStoreError,
    Goal,
    Link,
    StoredAlertRule,
    UnknownKind,
    alert_record,
    check_readable,
    goal_record,
    link_record,
    signing_key_records,
)
from schemas.outbound.signing import KeyRing, generate_secret

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
        ("Project/x", b"{}"),  # not even the shape of a kind
        ("goal/", b"{}"),
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


def alert(aid: str, project: str = "p", **kw) -> StoredAlertRule:
    ring = KeyRing.new(generate_secret(), NOW)
    return StoredAlertRule(
        id=aid,
        project=project,
        name="Few sales",
        kind=AlertKind.THRESHOLD,
        op=Op.BELOW,
        value=3,
        created_at=NOW,
        updated_at=NOW,
        signing_keys=signing_key_records(ring),
        **kw,
    )


def test_alert_rules_round_trip_with_their_key_ring():
    rule = alert("a1", scope=AlertScope(goal_id="g"), snoozed_until=NOW + timedelta(hours=1))
    rec = alert_record(rule)
    assert rec.key == "alert/a1" and orjson.loads(rec.value or b"")["kind"] == "alert"
    state = applied(rec, alert_record(alert("a2", project="q")), goal_record(goal("g", "t")))
    found = state.alert("a1")
    assert found == rule and found is not None and found.signing_keys == rule.signing_keys
    ring = found.key_ring()
    assert ring is not None and ring.current.text.startswith("whsec_")
    assert found.rule() == AlertRule.model_validate(rule.model_dump(exclude={"signing_keys"}))
    assert "signing_keys" not in found.rule().model_dump()
    assert [r.id for r in state.alerts()] == ["a1", "a2"] and [r.id for r in state.alerts("q")] == ["a2"]
    assert state.alerts("none") == [] and len(state) == 3
    state.apply("alert/a1", None)  # a tombstone
    assert state.alert("a1") is None and [r.id for r in state.alerts()] == ["a2"]
    assert state.goal("g") is not None  # kinds are apart: alert/g would not touch goal/g
    state.apply("alert/g", None)
    assert state.goal("g") is not None


@pytest.mark.parametrize(
    "value",
    [
        orjson.dumps({"kind": "alert", "v": 1, "data": {"id": "a1"}}),  # not a rule
        alert_record(alert("other")).value,  # another id
        orjson.dumps({"kind": "goal", "v": 1, "data": {}}),  # another kind
    ],
)
def test_unreadable_alert_records_raise(value):
    state = ConfigState()
    with pytest.raises(ConfigRecordError):
        state.apply("alert/a1", value)
    assert len(state) == 0


def test_a_later_versions_kind_is_skipped_and_counted_not_written():
    state = ConfigState()
    with pytest.raises(UnknownKind):
        state.apply("report/r1", b"{}")
    state.apply_logged("report/r1", b"{}", "test")
    state.apply_logged("report/r1", None, "test")
    assert state.unknown_records == 2 and state.bad_records == 0 and len(state) == 0
    with pytest.raises(ConfigStoreError, match="unreadable"):
        check_readable([ConfigRecord("report/r1", b"{}")])
