"""Evaluate one rule's condition at a tick ``at_ms`` (a whole second) of stream time over a WindowStore.

The window of a rule evaluated at ``t`` is [t - W, t) (W = ``rule.effective_window_s()``), summed from
second buckets. Baselines are read from minute buckets, aligned to whole minutes (an approximation of at
most 59 s of their position, documented in docs/alerts.md). "The project had data" in a period means its
PROJECT key saw a conversion or a traffic event in it.

- threshold: conversions / revenue / conversion rate of the scope in the window, above / below value.
  No data when the project had no data in the window (rate: when the scope had no traffic).
- change: the same metric now minus the week-ago value. The week-ago window is whole minutes: the
  W' = W rounded up to minutes ending at the last minute boundary at or before t - 7d, i.e.
  [minute(t) - 7d - W', minute(t) - 7d); conversions and revenue there are scaled by W / W' (exact when W
  is whole minutes), a rate is not. Absolute or percent of the week-ago value, compared signed. No data
  when the scope was not counted yet during all of the week-ago window (no baseline), when the project
  had no data now or then, or in percent mode when the week-ago value is 0.
- spike: c = conversions in the window; baseline = the mean per-window count over the 24 h of whole
  minutes before the window, i.e. conversions in [b - 24h, b) x W / 24h with b = minute(t - W) (the last
  minute boundary at or before the window's start; the <= 59 s between b and t - W are in neither).
  While the scope has been counted for less than that, over the part counted: conversions in
  [since, b) x W / (b - since); no baseline at all (nothing counted before b) is no data. True when
  c >= min_count and c > factor x baseline; the reported threshold is max(min_count, factor x baseline).
  No data also when the project had no data in the window.
- absence: true when the scope had no conversion in the last absence_s seconds while the project had
  data then; no data when the project had none; false otherwise. value = conversions in the window,
  threshold = absence_s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from processors.alerts.window import MINUTE_MS, PROJECT, SECOND_MS, ScopeKey, Totals, WindowStore, minute_of
from schemas.alerts import AlertKind, AlertMetric, AlertRule, ChangeMode, Op

WEEK_MS = 7 * 86400 * 1000
SPIKE_BASELINE_MS = 86400 * 1000


class Verdict(StrEnum):
    TRUE = "true"
    FALSE = "false"
    NO_DATA = "no_data"


@dataclass(frozen=True, slots=True)
class Evaluation:
    verdict: Verdict
    value: float | None = None
    threshold: float | None = None


NO_DATA = Evaluation(Verdict.NO_DATA)


def conversion_key(rule: AlertRule) -> ScopeKey:
    s = rule.scope
    return (s.goal_id, s.link_id, s.campaign)


def traffic_key(rule: AlertRule) -> ScopeKey:
    s = rule.scope
    return (None, s.link_id, s.campaign)


def keys_of(rule: AlertRule) -> set[ScopeKey]:
    return {conversion_key(rule), traffic_key(rule), PROJECT}


def baseline_keys(rule: AlertRule) -> set[ScopeKey]:
    """The keys whose minute buckets the rule reads (its baselines)."""
    if rule.kind is AlertKind.CHANGE:
        return keys_of(rule)
    if rule.kind is AlertKind.SPIKE:
        return {conversion_key(rule)}
    return set()


def window_ms(rule: AlertRule) -> int:
    return rule.effective_window_s() * 1000


def week_ago_span_ms(rule: AlertRule) -> int:
    """The week-ago window of a change rule: W rounded up to whole minutes."""
    w = window_ms(rule)
    return -(-w // MINUTE_MS) * MINUTE_MS


def spike_baseline(rule: AlertRule, at_ms: int) -> tuple[int, int]:
    """[start, end) of a spike rule's full baseline at ``at_ms``: the 24 h of whole minutes before the
    last minute boundary at or before the window's start."""
    end = minute_of(at_ms - window_ms(rule))
    return end - SPIKE_BASELINE_MS, end


def week_ago(rule: AlertRule, at_ms: int) -> tuple[int, int]:
    """[start, end) of a change rule's week-ago window at ``at_ms`` (whole minutes)."""
    end = minute_of(at_ms) - WEEK_MS
    return end - week_ago_span_ms(rule), end


def minute_cut(rule: AlertRule, at_ms: int) -> int | None:
    """The oldest minute bucket the rule reads at ``at_ms`` or later (None: it reads none)."""
    if rule.kind is AlertKind.CHANGE:
        return week_ago(rule, at_ms)[0]
    if rule.kind is AlertKind.SPIKE:
        return spike_baseline(rule, at_ms)[0]
    return None


def lookback_ms(rule: AlertRule) -> int:
    """How far back of an evaluation time the rule reads buckets (at most)."""
    w = window_ms(rule)
    if rule.kind is AlertKind.CHANGE:
        return WEEK_MS + week_ago_span_ms(rule) + MINUTE_MS
    if rule.kind is AlertKind.SPIKE:
        return w + SPIKE_BASELINE_MS + MINUTE_MS
    return w


def correction_ms(rule: AlertRule) -> int:
    """How long a conversion's later versions (a reversal, a new revenue) still move its count for this
    rule: its window and, for a spike rule, its baseline. The week-old data of a change rule is settled."""
    return lookback_ms(rule) if rule.kind is AlertKind.SPIKE else window_ms(rule)


def _compare(op: Op | None, observed: float, bound: float) -> bool:
    return observed > bound if op is Op.ABOVE else observed < bound


def _metric(rule: AlertRule, conv: Totals, traffic: Totals, scale: float = 1.0) -> float | None:
    if rule.metric is AlertMetric.CONVERSIONS:
        return conv.conversions * scale
    if rule.metric is AlertMetric.REVENUE:
        return conv.revenue * scale
    if traffic.traffic == 0:
        return None
    return conv.conversions / traffic.traffic


def _metric_now(rule: AlertRule, store: WindowStore, start: int, end: int) -> float | None:
    if store.sum(PROJECT, start, end).activity == 0:
        return None
    return _metric(
        rule, store.sum(conversion_key(rule), start, end), store.sum(traffic_key(rule), start, end)
    )


def _metric_then(rule: AlertRule, store: WindowStore, start: int, end: int) -> float | None:
    """From minute buckets; counts and revenue scaled by W / (end - start) (the span is W rounded up)."""
    project = store.sum_minutes(PROJECT, start, end)
    conv = store.sum_minutes(conversion_key(rule), start, end)
    traffic = store.sum_minutes(traffic_key(rule), start, end)
    if project.activity == 0:
        return None
    return _metric(rule, conv, traffic, window_ms(rule) / (end - start))


def _counted_from(rule: AlertRule, store: WindowStore, from_ms: int) -> bool:
    """Whether every key the rule reads was counted completely from ``from_ms`` on."""
    keys = (conversion_key(rule), traffic_key(rule), PROJECT)
    return all((s := store.since(k)) is not None and s <= from_ms for k in keys)


def evaluate(rule: AlertRule, store: WindowStore, at_ms: int) -> Evaluation:
    if at_ms % SECOND_MS:
        raise ValueError(f"evaluation time {at_ms} is not a whole second")
    w = window_ms(rule)
    start = at_ms - w
    if rule.kind is AlertKind.THRESHOLD:
        value = _metric_now(rule, store, start, at_ms)
        if value is None:
            return NO_DATA
        bound = float(rule.value or 0.0)
        return Evaluation(Verdict.TRUE if _compare(rule.op, value, bound) else Verdict.FALSE, value, bound)
    if rule.kind is AlertKind.CHANGE:
        then_start, then_end = week_ago(rule, at_ms)
        then = _metric_then(rule, store, then_start, then_end)  # asked for first: keeps its sums warm
        if not _counted_from(rule, store, then_start):
            return NO_DATA  # no baseline: a week ago the scope was not counted yet
        now = _metric_now(rule, store, start, at_ms)
        if now is None or then is None:
            return NO_DATA
        if rule.change_mode is ChangeMode.PERCENT:
            if then == 0:
                return NO_DATA
            change = (now - then) / then * 100.0
        else:
            change = now - then
        bound = float(rule.value or 0.0)
        return Evaluation(Verdict.TRUE if _compare(rule.op, change, bound) else Verdict.FALSE, change, bound)
    if rule.kind is AlertKind.SPIKE:
        key = conversion_key(rule)
        base_start, base_end = spike_baseline(rule, at_ms)
        since = store.since(key)
        covered_from = max(base_start, base_end if since is None else since)
        before = store.sum_minutes(key, covered_from, base_end).conversions
        if store.sum(PROJECT, start, at_ms).activity == 0:
            return NO_DATA
        if covered_from >= base_end:
            return NO_DATA  # no baseline yet
        count = store.sum(key, start, at_ms).conversions
        baseline = before * w / (base_end - covered_from)
        factor = float(rule.factor or 0.0)
        min_count = rule.min_count or 0
        fired = count >= min_count and count > factor * baseline
        bound = max(float(min_count), factor * baseline)
        return Evaluation(Verdict.TRUE if fired else Verdict.FALSE, float(count), bound)
    # absence
    absence_s = float(rule.absence_s or 0)
    if store.sum(PROJECT, start, at_ms).activity == 0:
        return Evaluation(Verdict.NO_DATA, None, absence_s)
    count = store.sum(conversion_key(rule), start, at_ms).conversions
    verdict = Verdict.TRUE if count == 0 else Verdict.FALSE
    return Evaluation(verdict, float(count), absence_s)
