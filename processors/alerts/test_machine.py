from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from processors.alerts.machine import RuleState, step, to_dt
from processors.alerts.rules import Evaluation, Verdict
from schemas.alerts import AlertRule, AlertState, AlertTransition

T0 = 1_767_571_200_000
M = 1_000  # one tick
NOW = datetime(2026, 1, 5, tzinfo=UTC)
S = AlertState


def rule(**kw: object) -> AlertRule:
    base: dict[str, object] = {
        "id": "r",
        "project": "p",
        "name": "n",
        "kind": "threshold",
        "op": "above",
        "value": 0,
        "created_at": NOW,
        "updated_at": NOW,
    }
    return AlertRule.model_validate(base | kw)


def run(r: AlertRule, verdicts: str, st_: RuleState | None = None) -> list[tuple[int, S, S, bool]]:
    """Step once a second from T0: ``T`` true, ``F`` false, ``N`` no data; (second, from, to, notify)."""
    state = st_ or RuleState()
    out: list[AlertTransition] = []
    for i, v in enumerate(verdicts):
        verdict = {"T": Verdict.TRUE, "F": Verdict.FALSE, "N": Verdict.NO_DATA}[v]
        out += step(r, state, Evaluation(verdict, 1.0 if v != "N" else None, 0.0), T0 + i * M)
    return [(int((t.at - to_dt(T0)).total_seconds()), t.from_state, t.to_state, t.notify) for t in out]


def test_pending_firing_keep_firing_resolved() -> None:
    r = rule(pending_s=2, keep_firing_s=2)
    assert run(r, "FTTTTFTFFFF") == [
        (1, S.NORMAL, S.PENDING, False),
        (3, S.PENDING, S.FIRING, True),  # true for 2 seconds
        (9, S.FIRING, S.RESOLVED, True),  # false since 7 (the false at 5 was forgotten at 6)
    ]


def test_zero_pending_fires_at_once_and_zero_keep_resolves_at_once() -> None:
    assert run(rule(), "TTF") == [(0, S.NORMAL, S.FIRING, True), (2, S.FIRING, S.RESOLVED, True)]


def test_pending_that_turns_false_goes_back_silently() -> None:
    assert run(rule(pending_s=3), "TTFTF") == [
        (0, S.NORMAL, S.PENDING, False),
        (2, S.PENDING, S.NORMAL, False),
        (3, S.NORMAL, S.PENDING, False),
        (4, S.PENDING, S.NORMAL, False),
    ]


def test_no_data_policies() -> None:
    assert run(rule(no_data="ok"), "TN") == [(0, S.NORMAL, S.FIRING, True), (1, S.FIRING, S.RESOLVED, True)]
    assert run(rule(no_data="alerting"), "NNF") == [
        (0, S.NORMAL, S.FIRING, True),
        (2, S.FIRING, S.RESOLVED, True),
    ]
    # keep_state: the step is skipped; pending time still counts from when it began
    assert run(rule(no_data="keep_state", pending_s=2), "TNNTNF") == [
        (0, S.NORMAL, S.PENDING, False),
        (3, S.PENDING, S.FIRING, True),
        (5, S.FIRING, S.RESOLVED, True),
    ]


def test_snooze_suppresses_then_announces_a_still_firing_episode_once() -> None:
    r = rule(snoozed_until=to_dt(T0 + 2 * M))
    st_ = RuleState()
    assert run(r, "TTTTF", st_) == [
        (0, S.NORMAL, S.FIRING, False),  # snoozed
        (0, S.NORMAL, S.FIRING, True),  # the same transition (its own time), announced at second 2
        (4, S.FIRING, S.RESOLVED, True),
    ]
    snoozed_all_along = rule(snoozed_until=to_dt(T0 + 60 * M))
    assert run(snoozed_all_along, "TTF") == [(0, S.NORMAL, S.FIRING, False), (2, S.FIRING, S.RESOLVED, False)]


def test_a_resolved_episode_announced_before_the_snooze_is_still_resolved() -> None:
    r = rule(snoozed_until=to_dt(T0 + 60 * M))
    st_ = RuleState()
    run(rule(), "T", st_)  # fired and notified before the snooze was set
    out = run(r, "F", st_)
    assert out == [(0, S.FIRING, S.RESOLVED, True)]


def test_announcement_after_snooze_has_the_firing_id() -> None:
    r = rule(snoozed_until=to_dt(T0 + M))
    st_ = RuleState()
    first = step(r, st_, Evaluation(Verdict.TRUE, 5.0, 1.0), T0)
    again = step(r, st_, Evaluation(Verdict.TRUE, 7.0, 1.0), T0 + M)
    assert [t.id for t in first] == [t.id for t in again]
    assert again[0].model_dump() == first[0].model_dump() | {"notify": True}


def test_state_round_trips() -> None:
    st_ = RuleState()
    run(rule(pending_s=1), "T", st_)
    assert RuleState.load(st_.dump()) == st_


@given(st.text(alphabet="TFN", max_size=60), st.integers(0, 3), st.integers(0, 3), st.integers(-1, 60))
def test_invariants(verdicts: str, pending: int, keep: int, snooze_min: int) -> None:
    until = None if snooze_min < 0 else NOW + timedelta(seconds=snooze_min)
    r = rule(
        pending_s=pending,
        keep_firing_s=keep,
        no_data="keep_state",
        snoozed_until=until and until.replace(tzinfo=UTC),
    )
    state = RuleState()
    transitions: list[AlertTransition] = []
    for i, v in enumerate(verdicts):
        verdict = {"T": Verdict.TRUE, "F": Verdict.FALSE, "N": Verdict.NO_DATA}[v]
        transitions += step(r, state, Evaluation(verdict, 1.0, 0.0), T0 + i * M)
    notified = [t for t in transitions if t.notify]
    assert len({t.id for t in notified}) == len(notified)  # never notified twice
    by_episode: dict[datetime, list[AlertTransition]] = {}
    for t in notified:
        by_episode.setdefault(t.episode_started_at, []).append(t)
    for ts in by_episode.values():
        assert [t.to_state for t in ts] in ([S.FIRING], [S.FIRING, S.RESOLVED])  # resolved only after firing
    silent = [t for t in transitions if not t.notify]
    assert len({t.id for t in silent}) == len(silent)
    assert state.state in (S.NORMAL, S.PENDING, S.FIRING)
