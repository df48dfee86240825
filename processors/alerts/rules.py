"""Evaluate one rule's condition at a minute boundary ``at_ms`` of stream time over a WindowStore.

The window of a rule evaluated at ``t`` is [t - W, t) (W = ``rule.effective_window_s()``). "The project
had data" in a period means its PROJECT key saw a conversion or a traffic event in it.

- threshold: conversions / revenue / conversion rate of the scope in the window, above / below value.
  No data when the project had no data in the window (rate: when the scope had no traffic).
- change: the same metric now minus the same window one week earlier ([t - 7d - W, t - 7d)); absolute
  or percent of the week-ago value, compared signed. No data when the scope was not counted yet during
  all of the week-ago window (no baseline), when the project had no data now or then, or in percent mode
  when the week-ago value is 0.
- spike: c = conversions in the window; baseline = the mean per-window count over the 24 h before the
  window, i.e. conversions in [t - W - 24h, t - W) x W / 24h. While the scope has been counted for
  less than that, over the part counted: conversions in [since, t - W) x W / (t - W - since); no
  baseline at all (nothing counted before the window) is no data. True when c >= min_count and
  c > factor x baseline; the reported threshold is max(min_count, factor x baseline). No data also when
  the project had no data in the window.
- absence: true when the scope had no conversion in the last absence_minutes while the project had
  data then; no data when the project had none; false otherwise. value = conversions in the window,
  threshold = absence_minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from processors.alerts.window import MINUTE_MS, PROJECT, ScopeKey, Totals, WindowStore
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


def window_ms(rule: AlertRule) -> int:
    return rule.effective_window_s() * 1000


def lookback_ms(rule: AlertRule) -> int:
    """How far back of an evaluation time the rule reads buckets."""
    w = window_ms(rule)
    if rule.kind is AlertKind.CHANGE:
        return w + WEEK_MS
    if rule.kind is AlertKind.SPIKE:
        return w + SPIKE_BASELINE_MS
    return w


def correction_ms(rule: AlertRule) -> int:
    """How long a conversion's later versions (a reversal, a new revenue) still move its count for this
    rule: its window and, for a spike rule, its baseline. The week-old data of a change rule is settled."""
    w = window_ms(rule)
    return w + SPIKE_BASELINE_MS if rule.kind is AlertKind.SPIKE else w


def _compare(op: Op | None, observed: float, bound: float) -> bool:
    return observed > bound if op is Op.ABOVE else observed < bound


def _metric(rule: AlertRule, conv: Totals, traffic: Totals) -> float | None:
    if rule.metric is AlertMetric.CONVERSIONS:
        return float(conv.conversions)
    if rule.metric is AlertMetric.REVENUE:
        return conv.revenue
    if traffic.traffic == 0:
        return None
    return conv.conversions / traffic.traffic


def _metric_at(rule: AlertRule, store: WindowStore, start: int, end: int) -> float | None:
    if store.sum(PROJECT, start, end).activity == 0:
        return None
    return _metric(
        rule, store.sum(conversion_key(rule), start, end), store.sum(traffic_key(rule), start, end)
    )


def _counted_from(rule: AlertRule, store: WindowStore, from_ms: int) -> bool:
    """Whether every key the rule reads was counted completely from ``from_ms`` on."""
    keys = (conversion_key(rule), traffic_key(rule), PROJECT)
    return all((s := store.since(k)) is not None and s <= from_ms for k in keys)


def evaluate(rule: AlertRule, store: WindowStore, at_ms: int) -> Evaluation:
    if at_ms % MINUTE_MS:
        raise ValueError(f"evaluation time {at_ms} is not a minute boundary")
    w = window_ms(rule)
    start = at_ms - w
    if rule.kind is AlertKind.THRESHOLD:
        value = _metric_at(rule, store, start, at_ms)
        if value is None:
            return NO_DATA
        bound = float(rule.value or 0.0)
        return Evaluation(Verdict.TRUE if _compare(rule.op, value, bound) else Verdict.FALSE, value, bound)
    if rule.kind is AlertKind.CHANGE:
        if not _counted_from(rule, store, start - WEEK_MS):
            return NO_DATA  # no baseline: a week ago the scope was not counted yet
        now = _metric_at(rule, store, start, at_ms)
        then = _metric_at(rule, store, start - WEEK_MS, at_ms - WEEK_MS)
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
        if store.sum(PROJECT, start, at_ms).activity == 0:
            return NO_DATA
        since = store.since(conversion_key(rule))
        covered_from = max(start - SPIKE_BASELINE_MS, start if since is None else since)
        if covered_from >= start:
            return NO_DATA  # no baseline yet
        count = store.sum(conversion_key(rule), start, at_ms).conversions
        before = store.sum(conversion_key(rule), covered_from, start).conversions
        baseline = before * w / (start - covered_from)
        factor = float(rule.factor or 0.0)
        min_count = rule.min_count or 0
        fired = count >= min_count and count > factor * baseline
        bound = max(float(min_count), factor * baseline)
        return Evaluation(Verdict.TRUE if fired else Verdict.FALSE, float(count), bound)
    # absence
    if store.sum(PROJECT, start, at_ms).activity == 0:
        return Evaluation(Verdict.NO_DATA, None, float(rule.absence_minutes or 0))
    count = store.sum(conversion_key(rule), start, at_ms).conversions
    verdict = Verdict.TRUE if count == 0 else Verdict.FALSE
    return Evaluation(verdict, float(count), float(rule.absence_minutes or 0))
