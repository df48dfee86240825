"""One rule's state machine, stepped once per evaluation tick of stream time (docs/alerts.md).

    normal --true--> pending            (pending_s > 0; the episode starts)
    normal --true--> firing             (pending_s = 0; the episode starts; notifies)
    pending --true for >= pending_s--> firing   (notifies)
    pending --false--> normal           (no notification; the episode ends)
    firing --false for >= keep_firing_s--> resolved, i.e. normal   (notifies; the episode ends)
    firing --true--> firing             (a false spell shorter than keep_firing_s is forgotten)

``no data`` is mapped by the rule's policy: ``ok`` = false, ``alerting`` = true, ``keep_state`` = the
step is skipped (state and timers unchanged). Snooze: a step at a time before ``snoozed_until`` still
moves the state and still emits the transitions (for the dashboard), but the firing one carries
``notify=False``. When a snoozed episode is still firing at the first step after the snooze, its firing
transition is emitted again, same id, with ``notify=True``. A resolved transition notifies exactly when
its episode's firing was notified, so a receiver never sees a resolution of a firing it never saw.
Transition ids hash (rule id, episode start, to_state): a replay yields the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.alerts.rules import Evaluation, Verdict
from schemas.alerts import AlertRule, AlertState, AlertTransition, NoDataPolicy, transition_id
from schemas.instants import epoch_ms


@dataclass(slots=True)
class RuleState:
    state: AlertState = AlertState.NORMAL
    episode_ms: int | None = None  # when the rule left normal
    since_ms: int | None = None  # pending: since when true; firing: since when false (None: true)
    fired_ms: int | None = None  # the firing transition of this episode, kept to re-announce it
    fired_value: float | None = None
    fired_threshold: float | None = None
    fired_from: AlertState = AlertState.NORMAL
    announced: bool = False  # the firing of this episode was notified

    def dump(self) -> list[Any]:
        return [
            self.state.value,
            self.episode_ms,
            self.since_ms,
            self.fired_ms,
            self.fired_value,
            self.fired_threshold,
            self.fired_from.value,
            self.announced,
        ]

    @classmethod
    def load(cls, row: list[Any]) -> RuleState:
        state, episode, since, fired, value, threshold, fired_from, announced = row
        return cls(
            AlertState(state),
            episode,
            since,
            fired,
            value,
            threshold,
            AlertState(fired_from),
            bool(announced),
        )


def to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


to_ms = epoch_ms  # exact; a naive time is taken as UTC (decision 166)


def snoozed(rule: AlertRule, at_ms: int) -> bool:
    return rule.snoozed_until is not None and at_ms < to_ms(rule.snoozed_until)


def _transition(
    rule: AlertRule,
    st: RuleState,
    to: AlertState,
    at_ms: int,
    value: float | None,
    threshold: float | None,
    notify: bool,
    from_state: AlertState | None = None,
) -> AlertTransition:
    assert st.episode_ms is not None
    return AlertTransition(
        id=transition_id(rule.id, st.episode_ms, to),
        rule_id=rule.id,
        project=rule.project,
        from_state=from_state or st.state,
        to_state=to,
        at=to_dt(at_ms),
        value=value,
        threshold=threshold,
        episode_started_at=to_dt(st.episode_ms),
        notify=notify,
    )


def _fire(rule: AlertRule, st: RuleState, ev: Evaluation, at_ms: int) -> AlertTransition:
    st.announced = not snoozed(rule, at_ms)
    t = _transition(rule, st, AlertState.FIRING, at_ms, ev.value, ev.threshold, st.announced)
    st.state, st.since_ms = AlertState.FIRING, None
    st.fired_ms, st.fired_value, st.fired_threshold = at_ms, ev.value, ev.threshold
    st.fired_from = t.from_state
    return t


def _reset(st: RuleState) -> None:
    st.state = AlertState.NORMAL
    st.episode_ms = st.since_ms = st.fired_ms = None
    st.fired_value = st.fired_threshold = None
    st.fired_from = AlertState.NORMAL
    st.announced = False


def step(rule: AlertRule, st: RuleState, ev: Evaluation, at_ms: int) -> list[AlertTransition]:
    """Advance ``st`` (in place) by the evaluation at ``at_ms``; the transitions it made, in order."""
    verdict = ev.verdict
    if verdict is Verdict.NO_DATA:
        if rule.no_data is NoDataPolicy.KEEP_STATE:
            return []
        verdict = Verdict.TRUE if rule.no_data is NoDataPolicy.ALERTING else Verdict.FALSE
    true = verdict is Verdict.TRUE
    out: list[AlertTransition] = []
    if st.state is AlertState.NORMAL:
        if true:
            st.episode_ms = at_ms
            if rule.pending_s == 0:
                out.append(_fire(rule, st, ev, at_ms))
            else:
                out.append(_transition(rule, st, AlertState.PENDING, at_ms, ev.value, ev.threshold, False))
                st.state, st.since_ms = AlertState.PENDING, at_ms
    elif st.state is AlertState.PENDING:
        if not true:
            out.append(_transition(rule, st, AlertState.NORMAL, at_ms, ev.value, ev.threshold, False))
            _reset(st)
        elif st.since_ms is not None and at_ms - st.since_ms >= rule.pending_s * 1000:
            out.append(_fire(rule, st, ev, at_ms))
    else:  # firing
        if true:
            st.since_ms = None
        else:
            if st.since_ms is None:
                st.since_ms = at_ms
            if at_ms - st.since_ms >= rule.keep_firing_s * 1000:
                out.append(
                    _transition(rule, st, AlertState.RESOLVED, at_ms, ev.value, ev.threshold, st.announced)
                )
                _reset(st)
                return out
        if not st.announced and not snoozed(rule, at_ms) and st.fired_ms is not None:
            st.announced = True
            out.append(
                _transition(
                    rule,
                    st,
                    AlertState.FIRING,
                    st.fired_ms,
                    st.fired_value,
                    st.fired_threshold,
                    True,
                    from_state=st.fired_from,
                )
            )
    return out
