from datetime import UTC, datetime, timedelta

from processors.alerts.status import status_after
from schemas.alerts import AlertState, AlertTransition

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def _t(i: int, a: AlertState, b: AlertState, notify: bool = False) -> AlertTransition:
    return AlertTransition(
        id=f"t{i}", rule_id="r", project="p", from_state=a, to_state=b, at=T0 + timedelta(seconds=i),
        value=float(i), threshold=1.0, episode_started_at=T0, notify=notify,
    )  # fmt: skip


def test_transitions_are_listed_newest_first_with_the_current_state():
    first = status_after(None, [_t(1, AlertState.NORMAL, AlertState.PENDING)], AlertState.PENDING, 1000)
    assert first.state is AlertState.PENDING and first.episode_started_at == datetime.fromtimestamp(1, UTC)
    firing = _t(2, AlertState.PENDING, AlertState.FIRING, notify=True)
    second = status_after(first, [firing], AlertState.FIRING, 1000)
    assert [t.id for t in second.transitions] == ["t2", "t1"]
    assert second.transitions[0].notified and not second.transitions[1].notified


def test_a_replayed_transition_is_not_listed_twice_and_the_list_is_bounded():
    status = None
    for i in range(15):
        batch = [_t(i, AlertState.NORMAL, AlertState.PENDING)]
        status = status_after(status, batch, AlertState.PENDING, 0)
        status = status_after(status, batch, AlertState.PENDING, 0)  # the same batch replayed
    assert status is not None
    assert [t.id for t in status.transitions] == [f"t{i}" for i in range(14, 4, -1)]


def test_resolved_leaves_the_rule_normal_without_an_episode():
    done = status_after(None, [_t(9, AlertState.FIRING, AlertState.RESOLVED, True)], AlertState.NORMAL, None)
    assert done.state is AlertState.NORMAL and done.episode_started_at is None
    assert done.transitions[0].to_state is AlertState.RESOLVED
