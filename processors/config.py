"""Processing parameters: windows, models, session gap. Passed in; the cores never read configuration.

Goal attribution windows come from the event when the edge knows the goal (``attribution_window_days``)
or from ``window(project, goal)`` (default 30 days, PVTLNK). Every window is capped at ``max_window``:
state is kept that long, so a longer window could not be honoured (a capped window is logged once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from processors.attribution_models import MODELS, Model

log = logging.getLogger(__name__)

DEFAULT_WINDOW = timedelta(days=30)


def _default_window(project: str, goal: str) -> timedelta:
    return DEFAULT_WINDOW


def _default_model(project: str) -> Model:
    return "last_click"


@dataclass(frozen=True)
class ProcessingConfig:
    #: attribution window of a goal when the event does not carry one
    window: Callable[[str, str], timedelta] = _default_window
    #: the attribution model a project reports by (all models are computed and stored)
    model: Callable[[str], Model] = _default_model
    #: longest attribution window any goal may have; touches are kept this long
    max_window: timedelta = DEFAULT_WINDOW
    #: a transaction / order id is remembered this long (>= max_window)
    dedup_window: timedelta = timedelta(days=31)
    #: inactivity that ends a session
    session_gap: timedelta = timedelta(minutes=30)
    #: FunnelFlux visitor storage: a vid postback resolves while the visitor was active this recently
    visitor_ttl: timedelta = timedelta(days=4)
    #: half-life of the time-decay model
    half_life: timedelta = timedelta(days=7)
    #: events may arrive this much later than the newest one seen and still find their state
    lateness: timedelta = timedelta(hours=48)
    #: at most this many touches are kept per visitor (the most recent)
    max_touches: int = 100
    _capped: set[tuple[str, str]] = field(default_factory=set, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.dedup_window < self.max_window:
            raise ValueError(
                f"dedup window {self.dedup_window} is shorter than the longest attribution window "
                f"{self.max_window}: a transaction could be counted twice inside its window"
            )
        if self.session_gap <= timedelta(0) or self.half_life <= timedelta(0):
            raise ValueError("session gap and half-life must be positive")

    def goal_window(self, project: str, goal: str, days: int | None = None) -> timedelta:
        win = timedelta(days=days) if days is not None else self.window(project, goal)
        if win > self.max_window:
            if (project, goal) not in self._capped:
                self._capped.add((project, goal))
                log.warning(
                    "goal %s/%s: attribution window %s capped at the configured maximum %s",
                    project,
                    goal,
                    win,
                    self.max_window,
                )
            return self.max_window
        return win

    def model_for(self, project: str) -> Model:
        model = self.model(project)
        if model not in MODELS:
            raise ValueError(f"unknown attribution model {model!r} for project {project!r}")
        return model

    @property
    def retention(self) -> timedelta:
        """How long per-visitor / per-click state is kept after its last activity."""
        return max(self.max_window, self.visitor_ttl) + self.lateness
