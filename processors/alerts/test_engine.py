from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.alerts import engine as engine_module
from processors.alerts.engine import AlertEngine
from processors.alerts.machine import to_dt
from processors.alerts.rules import SPIKE_BASELINE_MS, WEEK_MS, Evaluation
from processors.alerts.window import MINUTE_MS, PROJECT, WindowStore
from schemas.alerts import AlertRule, AlertState, AlertTransition
from schemas.events import Event, EventType
from schemas.rows import Conversion

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z
NOW = datetime(2026, 1, 5, tzinfo=UTC)
S = AlertState
Batch = tuple[list[Event], list[Conversion]]


def rule(id: str, **kw: object) -> AlertRule:
    base: dict[str, object] = {"id": id, "project": "p1", "name": id, "created_at": NOW, "updated_at": NOW}
    return AlertRule.model_validate(base | kw)


def event(at_ms: int, n: int, project: str = "p1", type_: EventType = EventType.VIEW_EXP) -> Event:
    at = to_dt(at_ms)
    return Event(
        event_id=f"e{at_ms}-{n}",
        type=type_,
        received_at=at,
        occurred_at=at,
        account_id="a",
        project_id=project,
        visitor_id=f"v{n}",
    )


def conversion(
    at_ms: int, key: str, goal: str, version: int = 1, revenue: str = "10", **kw: object
) -> Conversion:
    at = to_dt(at_ms)
    fields: dict[str, object] = {
        "project_id": "p1",
        "goal_id": goal,
        "conversion_key": key,
        "account_id": "a",
        "visitor_id": "v",
        "event_id": key,
        "event_type": "hit_goal",
        "occurred_at": at,
        "received_at": at,
        "revenue": Decimal(revenue),
        "currency": "USD",
        "products_count": 0,
        "transaction_id": "",
        "experiment_ids": (),
        "variation_ids": (),
        "version": version,
    }
    return Conversion.model_validate(fields | kw)


THRESHOLD = rule(
    "threshold",
    kind="threshold",
    op="above",
    value=2,
    window_s=20,
    pending_s=10,
    keep_firing_s=5,
    scope={"goal_id": "g1"},
)
SPIKE = rule("spike", kind="spike", min_count=3, factor=3, window_s=10, pending_s=5, scope={"goal_id": "g2"})
ABSENCE = rule("absence", kind="absence", absence_s=15, pending_s=5, scope={"goal_id": "g3"})
RULES = [THRESHOLD, SPIKE, ABSENCE]


def second_batch(k: int) -> Batch:
    """Second k of the scripted stream: a traffic event (+0.1 s); one g1 conversion in each of seconds
    30..34, each delivered one batch (1 s) late; a g2 conversion every even second plus 4 more in each of
    seconds 80..84; a g3 conversion every second but 60..79."""
    base = T0 + k * 1_000
    events = [event(base + 100, 1)]
    convs: list[Conversion] = []
    if 31 <= k <= 35:
        convs.append(conversion(base - 1_000 + 500, f"g1-{k - 1}", "g1"))  # of second k - 1
    if k % 2 == 0:
        convs.append(conversion(base + 200, f"g2-{k}", "g2"))
    if 80 <= k <= 84:
        convs += [conversion(base + 250, f"g2-{k}-{i}", "g2") for i in range(4)]
    if not 60 <= k <= 79:
        convs.append(conversion(base + 300, f"g3-{k}", "g3"))
    return events, convs


SCRIPT = [second_batch(k) for k in range(100)]

# Tick t (a second) is evaluated after batch t + 2 (lateness 2 s).
EXPECTED = [
    ("threshold", 33, S.NORMAL, S.PENDING, False),  # [13, 33) holds 30, 31, 32: 3 > 2
    ("threshold", 43, S.PENDING, S.FIRING, True),  # true for 10 s
    ("threshold", 58, S.FIRING, S.RESOLVED, True),  # false since 53 ([33, 53) holds 2), kept 5 s
    ("absence", 75, S.NORMAL, S.PENDING, False),  # [60, 75) without g3, with traffic
    ("absence", 80, S.PENDING, S.FIRING, True),
    ("absence", 81, S.FIRING, S.RESOLVED, True),  # [66, 81) holds g3's conversion of second 80
    # spike: baseline from t = 70 on = minute [0 s, 60 s): 30 conversions x 10 s / 60 s = 5, bound 15;
    # a 10 s window holds 5 regular conversions + 4 per burst second in it
    ("spike", 83, S.NORMAL, S.PENDING, False),  # [73, 83): 5 + 12 = 17 > 15
    ("spike", 88, S.PENDING, S.FIRING, True),
    ("spike", 93, S.FIRING, S.RESOLVED, True),  # [83, 93): 5 + 8 = 13
]


def feed(engine: AlertEngine, batches: list[Batch]) -> list[AlertTransition]:
    out: list[AlertTransition] = []
    for events, convs in batches:
        engine.observe(events, convs)
        out += engine.advance()
    return out


def summary(ts: list[AlertTransition]) -> list[tuple[str, int, S, S, bool]]:
    return [(t.rule_id, int((t.at - NOW).total_seconds()), t.from_state, t.to_state, t.notify) for t in ts]


def test_threshold_spike_and_absence_at_the_expected_seconds() -> None:
    engine = AlertEngine(RULES)
    out: list[AlertTransition] = []
    for k, (events, convs) in enumerate(SCRIPT):
        engine.observe(events, convs)
        for t in engine.advance():
            assert int((t.at - NOW).total_seconds()) == k - 2  # evaluated as soon as the lateness allows
            out.append(t)
    assert sorted(summary(out), key=lambda x: (x[1], x[0])) == sorted(EXPECTED, key=lambda x: (x[1], x[0]))
    firing = next(t for t in out if t.rule_id == "threshold" and t.to_state is S.FIRING)
    assert (firing.value, firing.threshold, firing.episode_started_at) == (5.0, 2.0, to_dt(T0 + 33_000))
    spike = next(t for t in out if t.rule_id == "spike" and t.to_state is S.FIRING)
    assert (spike.value, spike.threshold) == (25.0, 15.0)  # [78, 88): 5 + 4 x 5


@settings(max_examples=15, deadline=None)
@given(st.integers(0, len(SCRIPT) - 1))
def test_a_replay_from_a_snapshot_gives_the_same_transitions_and_state(cut: int) -> None:
    whole = AlertEngine(RULES)
    before = feed(whole, SCRIPT[: cut + 1])
    snapshot = whole.snapshot("p1")
    after = feed(whole, SCRIPT[cut + 1 :])
    restored = AlertEngine(RULES)
    restored.restore("p1", snapshot)
    assert restored.snapshot("p1") == snapshot
    replayed = feed(restored, SCRIPT[cut + 1 :])
    assert replayed == after
    assert restored.snapshot("p1") == whole.snapshot("p1")
    assert [t.id for t in before + after] == [t.id for t in feed(AlertEngine(RULES), SCRIPT)]


def test_a_duplicate_batch_counts_no_conversion_twice() -> None:
    engine = AlertEngine(RULES)
    _, convs = SCRIPT[33]
    engine.observe((), convs)
    once = engine.snapshot("p1")
    engine.observe((), convs)
    assert engine.snapshot("p1") == once


def test_updates_count_at_the_latest_version_and_reversals_not_at_all() -> None:
    engine = AlertEngine([rule("r", kind="threshold", op="above", value=0, metric="revenue")])
    store = engine._states["p1"].windows
    engine.observe((), [conversion(T0, "k", "g", revenue="10")])
    assert store.sum(PROJECT, T0, T0 + MINUTE_MS).revenue == 10.0
    engine.observe((), [conversion(T0 + 5 * MINUTE_MS, "k", "g", version=2, revenue="25.5")])
    totals = store.sum(PROJECT, T0, T0 + 10 * MINUTE_MS)
    assert (totals.conversions, totals.revenue) == (1, 25.5)  # moved, not added; stays in its minute
    engine.observe((), [conversion(T0, "k", "g", version=1, revenue="99")])  # older version: ignored
    engine.observe((), [conversion(T0, "k", "g", version=3, is_deleted=True, status_class="reversed")])
    assert store.sum(PROJECT, T0, T0 + 10 * MINUTE_MS).conversions == 0
    assert engine.ledger_size("p1") == 1


def test_scopes_by_link_and_campaign_and_rate_base() -> None:
    r = rule(
        "rate",
        kind="threshold",
        metric="conversion_rate",
        op="above",
        value=0.4,
        window_s=60,
        scope={"link_id": "L"},
    )
    engine = AlertEngine([r])
    clicks = [event(T0 + i, i, type_=EventType.CLICK).model_copy(update={"link_id": "L"}) for i in range(4)]
    other = [event(T0 + 10 + i, 10 + i) for i in range(6)]
    convs = [
        conversion(T0 + 100 + i, f"c{i}", "g", attributed_link_id="L" if i < 2 else "X") for i in range(3)
    ]
    engine.observe(clicks + other, convs)
    out = engine.advance(T0 + 3_000)  # tick 1 s: [-59 s, 1 s)
    assert [(t.to_state, t.value) for t in out] == [(S.FIRING, 0.5)]  # 2 of L's conversions / its 4 clicks


def test_change_rule_against_one_week_earlier() -> None:
    r = rule("change", kind="change", change_mode="percent", op="above", value=50, window_s=300)
    engine = AlertEngine([r], tick_ms=MINUTE_MS)  # a week of minutes: evaluated once a minute here
    transitions: list[AlertTransition] = []

    def minute(k: int, n_conversions: int) -> None:
        base = T0 + k * MINUTE_MS
        engine.observe(
            [event(base + 1_000, 1), event(base + 31_000, 2)],
            [conversion(base + 2_000, f"c{k}-{i}", "g") for i in range(n_conversions)],
        )
        transitions.extend(engine.advance())

    for k in range(0, 7 * 1440 + 20):
        minute(k, 2 if k < 7 * 1440 + 10 else 4)  # doubles on day 7, minute 10
    # minute buckets of a week and 5 minutes, second buckets of 5 minutes (3 inputs a minute)
    assert engine.bucket_count("p1") <= (WEEK_MS + 300_000) // MINUTE_MS + 3 + 3 * 5 + 2
    assert [(t.to_state, t.at, t.value) for t in transitions] == [
        (S.FIRING, to_dt(T0 + (7 * 1440 + 13) * MINUTE_MS), 60.0),  # [8..13): 3 of 5 minutes doubled
    ]
    # nothing before day 7 (no baseline: no data, policy ok), and the window holds only what a week needs
    assert engine.ledger_size("p1") <= 2 * 5 + 4 * 5 + 10


def test_memory_stays_bounded_over_a_long_stream() -> None:
    """Per key: second buckets of its longest window (+ the lateness), minute buckets of its baseline."""
    engine = AlertEngine([THRESHOLD, SPIKE])
    sizes = []
    for k in range(26 * 120):  # 26 h, a batch every 30 s
        base = T0 + k * 30_000
        engine.observe([event(base + 1_000, 1)], [conversion(base + 2_000, f"k{k}", "g1" if k % 2 else "g2")])
        engine.advance()
        sizes.append(engine.bucket_count("p1"))
    windows = engine._states["p1"].windows
    g1, g2 = ("g1", None, None), ("g2", None, None)
    assert sorted(windows.keys(), key=str) == sorted([PROJECT, g1, g2], key=str)
    assert all(len(windows._levels[k][0].buckets) <= 20 + 3 for k in windows.keys())
    assert len(windows._levels[g2][1].buckets) <= 1440 + 2  # the spike's baseline: 24 h of minutes
    assert len(windows._levels[g1][1].buckets) <= 1 and len(windows._levels[PROJECT][1].buckets) <= 1
    assert max(sizes[-240:]) - min(sizes[-240:]) <= 4  # steady over the last 2 hours
    assert engine.ledger_size("p1") <= (SPIKE_BASELINE_MS + 3 * MINUTE_MS) // 30_000


def test_late_input_inside_the_lateness_counts() -> None:
    engine = AlertEngine([rule("r", kind="threshold", op="above", value=0, window_s=10)])
    engine.observe([event(T0 + 2_500, 1)])  # stream time 2.5 s: tick 0 s is evaluated, tick 1 s waits for 3 s
    assert engine.advance() == []
    engine.observe((), [conversion(T0 + 900, "late", "g")])  # 1.6 s behind stream time
    engine.observe([event(T0 + 3_000, 2)])
    assert [(t.to_state, t.at) for t in engine.advance()] == [(S.FIRING, to_dt(T0 + 1_000))]


def test_rules_without_projects_keep_nothing_and_idle_ticks_resolve() -> None:
    engine = AlertEngine([rule("r", kind="threshold", op="above", value=0, window_s=10, keep_firing_s=5)])
    engine.observe([event(T0, 1, project="other")], [])
    assert engine.projects() == ["p1"] and engine.bucket_count("p1") == 0
    engine.observe((), [conversion(T0, "k", "g")])
    assert [t.to_state for t in engine.advance(T0 + 3_000)] == [S.FIRING]  # tick 1 s
    assert engine.advance(T0 + 13_000) == []  # ticks 2..11 s: no data (ok = false) since 11 s
    out = engine.advance(T0 + 18_000)  # ticks 12..16 s
    assert [(t.to_state, t.at) for t in out] == [(S.RESOLVED, to_dt(T0 + 16_000))]
    engine.remove_rule("r")
    assert engine.projects() == []


def test_disabled_and_edited_rules() -> None:
    engine = AlertEngine(RULES)
    feed(engine, SCRIPT[:46])
    assert engine.rule_state(THRESHOLD).state is S.FIRING  # type: ignore[union-attr]
    engine.upsert_rule(THRESHOLD.model_copy(update={"name": "renamed", "updated_at": NOW + timedelta(1)}))
    assert engine.rule_state(THRESHOLD).state is S.FIRING  # type: ignore[union-attr]
    engine.upsert_rule(THRESHOLD.model_copy(update={"enabled": False}))
    assert engine.rule_state(THRESHOLD) is None
    assert {r.id for r in engine.rules("p1")} == {"spike", "absence"}


def test_a_rule_added_mid_stream_gets_the_recent_conversions_and_no_negative_counts() -> None:
    engine = AlertEngine([rule("all", kind="threshold", op="above", value=0, window_s=600)])
    engine.observe([event(T0 + 1_000, 1)], [conversion(T0 + 2_000, "k", "g1", attributed_link_id="L")])
    engine.advance(T0 + 3 * MINUTE_MS)
    scoped = rule("link", kind="threshold", op="above", value=0, window_s=600, scope={"link_id": "L"})
    engine.upsert_rule(scoped)
    store = engine._states["p1"].windows
    assert store.sum((None, "L", None), T0, T0 + MINUTE_MS).conversions == 1  # from the ledger
    assert store.since((None, "L", None)) == T0 + 3 * MINUTE_MS + MINUTE_MS  # baselines count from then
    engine.observe((), [conversion(T0 + 2_000, "k", "g1", version=2, is_deleted=True)])
    assert store.sum((None, "L", None), T0, T0 + MINUTE_MS).conversions == 0
    assert store.sum(PROJECT, T0, T0 + MINUTE_MS).conversions == 0


def test_an_idle_tick_starts_the_count() -> None:
    engine = AlertEngine([rule("change", kind="change", change_mode="absolute", op="above", value=0)])
    engine.advance(T0)
    assert engine._states["p1"].windows.since(PROJECT) == T0


versions = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 4), st.integers(0, 50), st.booleans()),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(versions, st.integers(1, 5))
def test_each_conversion_counts_once_at_its_latest_version(
    rows: list[tuple[str, int, int, bool]], batch_size: int
) -> None:
    """Whatever the order and duplication of versions, the buckets hold the latest version of each
    conversion (in the minute it was first seen), unless that version is reversed."""
    engine = AlertEngine([rule("r", kind="threshold", op="above", value=0, metric="revenue", window_s=3600)])
    convs = [
        conversion(T0 + 1_000, key, "g", version=v, revenue=str(rev), is_deleted=rev_deleted)
        for key, v, rev, rev_deleted in rows
    ]
    for i in range(0, len(convs), batch_size):
        engine.observe((), convs[i : i + batch_size])
    latest: dict[str, tuple[int, int, bool]] = {}
    for key, v, rev, deleted in rows:
        if key not in latest or v > latest[key][0]:
            latest[key] = (v, rev, deleted)
    live = [(rev, deleted) for _, rev, deleted in latest.values() if not deleted]
    totals = engine._states["p1"].windows.sum(PROJECT, T0, T0 + MINUTE_MS)
    assert (totals.conversions, totals.revenue_units) == (len(live), sum(r for r, _ in live) * 10_000)


def test_tick_ms_sets_the_cadence() -> None:
    with pytest.raises(ValueError, match="tick_ms"):
        AlertEngine([], tick_ms=1_500)
    engine = AlertEngine([rule("r", kind="threshold", op="above", value=0, window_s=10)], tick_ms=5_000)
    engine.observe([event(T0 + 7_000, 1)], [conversion(T0 + 1_000, "k", "g")])
    assert [(t.to_state, t.at) for t in engine.advance()] == [(S.FIRING, to_dt(T0 + 5_000))]  # [-5 s, 5 s)
    out = engine.advance(T0 + 40_000)  # ticks 10, 15, ..., 35 s
    assert [(t.to_state, t.at) for t in out] == [(S.RESOLVED, to_dt(T0 + 15_000))]  # [5 s, 15 s): no data


def test_the_catch_up_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks: list[int] = []
    real = engine_module.evaluate

    def counting(r: AlertRule, store: WindowStore, at_ms: int) -> Evaluation:
        ticks.append(at_ms)
        return real(r, store, at_ms)

    monkeypatch.setattr(engine_module, "evaluate", counting)
    engine = AlertEngine([rule("r", kind="threshold", op="above", value=0)], max_catchup_ticks=10)
    engine.advance(T0 + 2_000)  # the first advance evaluates the latest tick only
    engine.advance(T0 + 7_200_000 + 2_000)  # after a 2 h gap: the latest 10 ticks
    assert ticks == [T0] + [T0 + 7_200_000 - i * 1_000 for i in range(9, -1, -1)]
    assert AlertEngine([], max_catchup_minutes=2).max_catchup_ticks == 120  # the former parameter
