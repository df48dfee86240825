"""AlertEngine: the pure facade the runtimes drive (docs/alerts.md). No I/O, no clock.

Per batch: ``observe(events, conversions)`` then ``advance()``; persist ``snapshot(project)`` of every
project in ``dirty()`` with the batch's offset. Stream time of a project is the highest ``received_at``
it has seen; rules are evaluated at ticks (multiples of ``tick_ms``, default every second of stream
time), tick ``m`` once stream time reaches ``m + allowed lateness`` (default 2 s), so input up to that
lateness behind the newest still lands in the window it belongs to. Later input still corrects the
buckets (hence later evaluations) but a tick is evaluated only once. The same batches from the same
snapshot give the same state and the same transitions, ids included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from processors.alerts.ledger import Entry, Ledger, conversion_matches, traffic_matches
from processors.alerts.machine import RuleState, step, to_ms
from processors.alerts.rules import baseline_keys, correction_ms, evaluate, keys_of, minute_cut, window_ms
from processors.alerts.window import (
    MINUTE_MS,
    SECOND_MS,
    ScopeKey,
    WindowStore,
    minute_of,
    revenue_units,
    second_of,
)
from processors.visitors import campaign_of
from schemas.alerts import AlertRule, AlertTransition
from schemas.events import CONVERSION_TYPES, Event
from schemas.rows import Conversion

SNAPSHOT_VERSION = 2  # 1: minute buckets only (not loadable: evaluation is per second since 2)
DEFAULT_LATENESS_MS = 2_000
DEFAULT_TICK_MS = 1_000
DEFAULT_MAX_CATCHUP_TICKS = 3_600


@dataclass(slots=True)
class ProjectState:
    windows: WindowStore = field(default_factory=WindowStore)
    ledger: Ledger = field(default_factory=Ledger)
    max_seen_ms: int | None = None  # stream time: the highest received_at seen
    last_eval_ms: int | None = None  # the last tick evaluated
    rules: dict[str, RuleState] = field(default_factory=dict)

    def dump(self) -> bytes:
        return orjson.dumps(
            {
                "v": SNAPSHOT_VERSION,
                "max_seen": self.max_seen_ms,
                "last_eval": self.last_eval_ms,
                "windows": self.windows.dump(),
                "ledger": self.ledger.dump(),
                "rules": {rid: st.dump() for rid, st in self.rules.items()},
            },
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def load(cls, data: bytes) -> ProjectState:
        obj: dict[str, Any] = orjson.loads(data)
        if obj.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown alert state version {obj.get('v')!r}")
        return cls(
            windows=WindowStore.load(obj["windows"]),
            ledger=Ledger.load(obj["ledger"]),
            max_seen_ms=obj["max_seen"],
            last_eval_ms=obj["last_eval"],
            rules={rid: RuleState.load(row) for rid, row in obj["rules"].items()},
        )


class AlertEngine:
    def __init__(
        self,
        rules: Iterable[AlertRule] = (),
        *,
        allowed_lateness_ms: int = DEFAULT_LATENESS_MS,
        tick_ms: int = DEFAULT_TICK_MS,
        max_catchup_ticks: int = DEFAULT_MAX_CATCHUP_TICKS,
        max_catchup_minutes: int | None = None,
    ) -> None:
        """``tick_ms``: how often rules are evaluated, in stream time (a positive multiple of 1 000).
        ``max_catchup_ticks``: at most that many ticks are evaluated per project and ``advance()``; after a
        longer gap the older ticks are skipped. ``max_catchup_minutes`` (deprecated) sets it in minutes."""
        if tick_ms <= 0 or tick_ms % SECOND_MS:
            raise ValueError(f"tick_ms must be a positive multiple of {SECOND_MS}, got {tick_ms}")
        if max_catchup_minutes is not None:
            max_catchup_ticks = max_catchup_minutes * MINUTE_MS // tick_ms
        if max_catchup_ticks < 1:
            raise ValueError("max_catchup_ticks must be at least 1")
        self.allowed_lateness_ms = allowed_lateness_ms
        self.tick_ms = tick_ms
        self.max_catchup_ticks = max_catchup_ticks
        self._rules: dict[str, dict[str, AlertRule]] = {}  # project -> rule id -> enabled rule
        self._sorted: dict[str, list[AlertRule]] = {}  # project -> its rules by id (evaluation order)
        self._states: dict[str, ProjectState] = {}
        self._dirty: set[str] = set()
        self._correction: dict[str, int] = {}  # project -> the longest correction horizon of its rules
        self._seconds: dict[str, dict[ScopeKey, int]] = {}  # project -> key -> longest window reading it
        self._ledger_cut: dict[str, int] = {}  # project -> the ledger's last prune (a cache)
        self.set_rules(rules)

    # --- rules -----------------------------------------------------------------------------------------

    def set_rules(self, rules: Iterable[AlertRule]) -> None:
        """Replace the rule set. A project's state is kept while it has enabled rules; the state of a
        rule removed or disabled is dropped silently (no resolved notification). An edited rule keeps
        its state (a firing rule resolves when its new condition is false)."""
        by_project: dict[str, dict[str, AlertRule]] = {}
        for r in rules:
            if r.enabled:
                by_project.setdefault(r.project, {})[r.id] = r
        self._rules = by_project
        for project in list(self._states):
            if project not in by_project:
                del self._states[project]
                self._dirty.discard(project)
        for project in by_project:
            self._configure(project)

    def upsert_rule(self, rule: AlertRule) -> None:
        self.set_rules([r for r in self.rules() if r.id != rule.id] + [rule])

    def remove_rule(self, rule_id: str) -> None:
        self.set_rules([r for r in self.rules() if r.id != rule_id])

    def rules(self, project: str | None = None) -> list[AlertRule]:
        return [
            r for p, rs in sorted(self._rules.items()) if project in (None, p) for _, r in sorted(rs.items())
        ]

    def _configure(self, project: str) -> None:
        st = self._states.setdefault(project, ProjectState())
        rules = self._rules[project]
        self._sorted[project] = [rules[rid] for rid in sorted(rules)]
        seconds: dict[ScopeKey, int] = {}
        for r in rules.values():
            for k in keys_of(r):
                seconds[k] = max(seconds.get(k, 0), window_ms(r))
        self._seconds[project] = seconds
        self._correction[project] = max(correction_ms(r) for r in rules.values())
        self._ledger_cut.pop(project, None)
        before = set(st.windows.keys())
        since = None if st.max_seen_ms is None else minute_of(st.max_seen_ms) + MINUTE_MS
        st.windows.keep_keys(set(seconds), since)
        added = [k for k in st.windows.keys() if k not in before]
        if added:  # a new key holds the ledger's conversions, so a later correction has something to move
            for (goal, _), e in sorted(st.ledger.entries.items()):
                for k in added:
                    if e.counted and conversion_matches(k, goal, e.link, e.campaign):
                        st.windows.add(k, e.at_ms, conversions=1, revenue=e.revenue_units)
        st.rules = {rid: s for rid, s in st.rules.items() if rid in rules}
        for rid in rules:
            st.rules.setdefault(rid, RuleState())

    # --- input -----------------------------------------------------------------------------------------

    def observe(self, events: Iterable[Event] = (), conversions: Iterable[Conversion] = ()) -> None:
        """Count a batch: traffic from ``events`` (types outside CONVERSION_TYPES), conversions from the
        ``conversions`` rows (each once, at its latest version; a reversed one counts nothing). Only
        projects with enabled rules keep anything. Input older than a key's kept buckets is dropped
        there (it could only change windows that are never evaluated again)."""
        for e in events:
            st = self._states.get(e.project_id)
            if st is None:
                continue
            at = to_ms(e.received_at)
            self._see(e.project_id, st, at)
            if e.type in CONVERSION_TYPES:
                continue
            link, campaign = e.link_id or "", campaign_of(e)
            for key in st.windows.keys():
                if traffic_matches(key, link, campaign):
                    st.windows.add(key, at, traffic=1)
        for c in conversions:
            st = self._states.get(c.project_id)
            if st is not None:
                self._see(c.project_id, st, to_ms(c.received_at))
                self._count(c.project_id, st, c)

    def _see(self, project: str, st: ProjectState, at_ms: int) -> None:
        if st.max_seen_ms is None:
            st.windows.start(minute_of(at_ms))
        if st.max_seen_ms is None or at_ms > st.max_seen_ms:
            st.max_seen_ms = at_ms
        self._dirty.add(project)

    def _count(self, project: str, st: ProjectState, c: Conversion) -> None:
        lkey = (c.goal_id, c.conversion_key)
        old = st.ledger.entries.get(lkey)
        if old is not None and c.version <= old.version:
            return  # a duplicate or an older version: already counted
        at = old.at_ms if old is not None else second_of(to_ms(c.received_at))
        if old is None and at < self._correct_from(project, st):
            return  # settled (or never counted): too old to move any window still evaluated
        counts = not (c.is_deleted or c.status_class == "reversed")
        new = Entry(
            at, revenue_units(c.revenue), counts, c.version, c.attributed_link_id, c.attributed_campaign
        )
        for key in st.windows.keys():
            if old is not None and old.counted and conversion_matches(key, c.goal_id, old.link, old.campaign):
                st.windows.add(key, at, conversions=-1, revenue=-old.revenue_units)
            if new.counted and conversion_matches(key, c.goal_id, new.link, new.campaign):
                st.windows.add(key, at, conversions=1, revenue=new.revenue_units)
        st.ledger.entries[lkey] = new

    def _tick_of(self, ms: int) -> int:
        return ms - ms % self.tick_ms

    def _correct_from(self, project: str, st: ProjectState) -> int:
        """Conversions before this are settled: the last evaluated tick (else stream time) minus the
        rules' longest correction horizon, rounded down to a minute (so the ledger is pruned once a
        minute)."""
        anchor = st.last_eval_ms if st.last_eval_ms is not None else self._tick_of(st.max_seen_ms or 0)
        return minute_of(anchor - self._correction[project])

    # --- evaluation ------------------------------------------------------------------------------------

    def advance(self, now_ms: int | None = None) -> list[AlertTransition]:
        """Evaluate every enabled rule at each tick not yet evaluated up to stream time minus the allowed
        lateness (at most ``max_catchup_ticks`` of them, the latest), per project, in tick order; the
        transitions made (projects sorted). ``now_ms`` moves every project's stream time forward to at
        least that (an idle tick from the wiring; a replay is then exact only if the same ticks are
        replayed)."""
        out: list[AlertTransition] = []
        tick = self.tick_ms
        for project in sorted(self._states):
            st = self._states[project]
            seen = st.max_seen_ms if now_ms is None else max(st.max_seen_ms or now_ms, now_ms)
            if seen is None:
                continue
            upto = self._tick_of(seen - self.allowed_lateness_ms)
            if st.last_eval_ms is None:
                first = upto
            else:
                first = max(st.last_eval_ms + tick, upto - (self.max_catchup_ticks - 1) * tick)
            if first > upto:
                continue
            if now_ms is not None and (st.max_seen_ms is None or now_ms > st.max_seen_ms):
                if st.max_seen_ms is None:
                    st.windows.start(minute_of(now_ms))  # followed from this tick on
                st.max_seen_ms = now_ms
            windows, states = st.windows, st.rules
            for m in range(first, upto + 1, tick):
                for rule in self._sorted[project]:
                    out.extend(step(rule, states[rule.id], evaluate(rule, windows, m), m))
            st.last_eval_ms = upto
            self._prune(project, st, upto)
            self._dirty.add(project)
        return out

    def _prune(self, project: str, st: ProjectState, at_ms: int) -> None:
        """Drop what no evaluation at ``at_ms`` or later reads: per key, second buckets before its longest
        window, minute buckets before its oldest baseline (keys without one: before the current minute)."""
        minutes: dict[ScopeKey, int] = {}
        for r in self._sorted[project]:
            cut = minute_cut(r, at_ms)
            if cut is not None:
                for k in baseline_keys(r):
                    minutes[k] = min(minutes.get(k, cut), cut)
        st.windows.prune(
            {k: (at_ms - w, minutes.get(k, minute_of(at_ms))) for k, w in self._seconds[project].items()}
        )
        st.windows.sweep()
        cut = self._correct_from(project, st)
        if self._ledger_cut.get(project) != cut:
            st.ledger.prune(cut)
            self._ledger_cut[project] = cut

    # --- state -----------------------------------------------------------------------------------------

    def projects(self) -> list[str]:
        return sorted(self._states)

    def dirty(self) -> list[str]:
        """Projects changed since the last ``clear_dirty()`` (the snapshots to persist)."""
        return sorted(self._dirty)

    def clear_dirty(self) -> None:
        self._dirty.clear()

    def snapshot(self, project: str) -> bytes:
        """The project's whole state (orjson, keys sorted: equal states give equal bytes)."""
        return self._states[project].dump()

    def restore(self, project: str, data: bytes) -> None:
        """Load a snapshot (before observing); ignored for a project without enabled rules."""
        if project not in self._rules:
            return
        self._states[project] = ProjectState.load(data)
        self._configure(project)

    def rule_state(self, rule: AlertRule) -> RuleState | None:
        st = self._states.get(rule.project)
        return None if st is None else st.rules.get(rule.id)

    def bucket_count(self, project: str) -> int:
        st = self._states.get(project)
        return 0 if st is None else st.windows.bucket_count()

    def ledger_size(self, project: str) -> int:
        st = self._states.get(project)
        return 0 if st is None else len(st.ledger.entries)
