"""A rule's published status (state, episode, last transitions) kept up to date from its transitions.

The distributed evaluator publishes one :class:`~schemas.alerts.AlertStatus` per rule (on the compacted
``<events>.alert-status``) each time the rule has transitions, so the edges can show what the workers
evaluate. Replays are harmless: a transition already listed (same id) is not listed twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from schemas.alerts import AlertState, AlertStatus, AlertTransition, TransitionSeen

RECENT = 10  # transitions kept per rule, newest first


def seen(t: AlertTransition) -> TransitionSeen:
    return TransitionSeen(
        id=t.id,
        from_state=t.from_state,
        to_state=t.to_state,
        at=t.at,
        value=t.value,
        threshold=t.threshold,
        notified=t.notify,
    )


def status_after(
    before: AlertStatus | None,
    transitions: Sequence[AlertTransition],
    state: AlertState,
    episode_ms: int | None,
    recent: int = RECENT,
) -> AlertStatus:
    """``before`` with ``transitions`` (oldest first, one rule's) added, and the rule's current state."""
    listed = list(before.transitions) if before is not None else []  # newest first
    known = {t.id for t in listed}
    for t in transitions:  # oldest first: each new one goes in front
        if t.id not in known:
            listed.insert(0, seen(t))
            known.add(t.id)
    return AlertStatus(
        state=state,
        episode_started_at=None if episode_ms is None else datetime.fromtimestamp(episode_ms / 1000, UTC),
        transitions=listed[:recent],
    )
