"""Cost of per-second evaluation: many projects x 5 rules (one of each kind, two thresholds), fed and
advanced once a second of stream time. ``python -m processors.alerts.test_scale [projects] [seconds]``
prints the figures for a longer run (docs/alerts.md quotes 100 projects over a simulated hour)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from processors.alerts.engine import AlertEngine
from processors.alerts.machine import to_dt
from schemas.alerts import AlertRule
from schemas.events import Event, EventType
from schemas.rows import Conversion

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z
NOW = datetime(2026, 1, 5, tzinfo=UTC)


def rules_of(project: str) -> list[AlertRule]:
    common = {"project": project, "created_at": NOW, "updated_at": NOW}
    specs: list[dict[str, object]] = [
        {"kind": "threshold", "op": "above", "value": 40, "window_s": 60, "pending_s": 10},
        {"kind": "threshold", "op": "below", "value": 5, "metric": "revenue", "window_s": 600},
        {"kind": "spike", "min_count": 10, "factor": 3, "window_s": 30, "scope": {"goal_id": "g1"}},
        {"kind": "absence", "absence_s": 120, "scope": {"goal_id": "g2"}},
        {"kind": "change", "change_mode": "percent", "op": "below", "value": -50, "window_s": 300},
    ]
    return [
        AlertRule.model_validate(common | spec | {"id": f"{project}-r{i}", "name": f"r{i}"})
        for i, spec in enumerate(specs)
    ]


@dataclass
class Figures:
    projects: int
    rules: int
    seconds: int
    evaluations: int
    observe_s: float
    advance_s: float
    transitions: int

    def __str__(self) -> str:
        per_eval_us = self.advance_s / max(1, self.evaluations) * 1e6
        share = self.advance_s / self.seconds * 100
        return (
            f"{self.projects} projects x {self.rules // self.projects} rules, {self.seconds} s of stream "
            f"time: {self.evaluations} evaluations in {self.advance_s:.2f} s of advance() "
            f"({per_eval_us:.1f} us each, {share:.2f} % of the simulated time), "
            f"observe() {self.observe_s:.2f} s, {self.transitions} transitions"
        )


def simulate(projects: int, seconds: int) -> Figures:
    """Every second: per project one view and one conversion (goals g1 and g2 in turn; 36 more of g1 in
    seconds 600..602, so the spike rules fire); then ``advance(now)``."""
    names = [f"p{i:03d}" for i in range(projects)]
    engine = AlertEngine([r for p in names for r in rules_of(p)])
    observe_s = advance_s = 0.0
    transitions = 0
    for k in range(seconds):
        base = T0 + k * 1_000
        events: list[Event] = []
        convs: list[Conversion] = []
        for i, p in enumerate(names):
            at = to_dt(base + 10 + i)
            events.append(
                Event(
                    event_id=f"e{p}-{k}",
                    type=EventType.VIEW_EXP,
                    received_at=at,
                    occurred_at=at,
                    account_id="a",
                    project_id=p,
                    visitor_id=f"v{k}",
                )
            )
            convs.append(_conversion(p, f"c{k}", "g1" if k % 2 else "g2", at))
            if 600 <= k < 603:  # a burst of g1: the spike rules fire
                convs += [_conversion(p, f"b{k}-{j}", "g1", at) for j in range(12)]
        t = time.perf_counter()
        engine.observe(events, convs)
        observe_s += time.perf_counter() - t
        t = time.perf_counter()
        transitions += len(engine.advance(base + 500))
        advance_s += time.perf_counter() - t
    n_rules = len(engine.rules())
    return Figures(projects, n_rules, seconds, n_rules * seconds, observe_s, advance_s, transitions)


def _conversion(project: str, key: str, goal: str, at: datetime) -> Conversion:
    return Conversion.model_validate(
        {
            "project_id": project,
            "goal_id": goal,
            "conversion_key": key,
            "account_id": "a",
            "visitor_id": "v",
            "event_id": key,
            "event_type": "hit_goal",
            "occurred_at": at,
            "received_at": at,
            "revenue": Decimal("1.5"),
            "currency": "USD",
            "products_count": 0,
            "transaction_id": "",
            "experiment_ids": (),
            "variation_ids": (),
            "version": 1,
        }
    )


def test_per_second_evaluation_is_cheap() -> None:
    """100 projects x 5 rules, evaluated every second: advance() takes well under the stream time (a
    loose bound: the machine is shared; a simulated hour is ~2 % of it, see docs/alerts.md)."""
    figures = simulate(100, 90)
    print(figures)
    assert figures.evaluations == 100 * 5 * 90
    assert figures.advance_s < figures.seconds / 5


if __name__ == "__main__":
    print(
        simulate(
            int(sys.argv[1]) if len(sys.argv) > 1 else 100, int(sys.argv[2]) if len(sys.argv) > 2 else 3600
        )
    )
