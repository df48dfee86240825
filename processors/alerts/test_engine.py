from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.alerts.engine import AlertEngine
from processors.alerts.machine import to_dt
from processors.alerts.rules import SPIKE_BASELINE_MS, WEEK_MS
from processors.alerts.window import MINUTE_MS, PROJECT
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
    window_s=120,
    pending_s=120,
    keep_firing_s=60,
    scope={"goal_id": "g1"},
)
SPIKE = rule("spike", kind="spike", min_count=3, factor=3, window_s=60, pending_s=60, scope={"goal_id": "g2"})
ABSENCE = rule("absence", kind="absence", absence_minutes=3, pending_s=60, scope={"goal_id": "g3"})
RULES = [THRESHOLD, SPIKE, ABSENCE]


def minute_batch(k: int) -> Batch:
    """Minute k of the scripted stream: two traffic events (+1 s, +31 s), 3 conversions of g1 in minutes
    5..8, one g2 conversion every minute plus 5 more in minutes 10 and 11, a g3 conversion every minute
    but 15..19."""
    base = T0 + k * MINUTE_MS
    events = [event(base + 1_000, 1), event(base + 31_000, 2)]
    convs: list[Conversion] = []
    if 5 <= k <= 8:
        convs += [conversion(base + 10_000, f"g1-{k}-{i}", "g1") for i in range(3)]
    convs.append(conversion(base + 20_000, f"g2-{k}", "g2"))
    if k in (10, 11):
        convs += [conversion(base + 25_000, f"g2-{k}-{i}", "g2") for i in range(5)]
    if not 15 <= k <= 19:
        convs.append(conversion(base + 30_000, f"g3-{k}", "g3"))
    return events, convs


SCRIPT = [minute_batch(k) for k in range(26)]

EXPECTED = [
    ("threshold", 6, S.NORMAL, S.PENDING, False),  # [4, 6) holds 3 > 2
    ("threshold", 8, S.PENDING, S.FIRING, True),  # true for 2 minutes
    ("spike", 11, S.NORMAL, S.PENDING, False),  # minute 10: 6 >= 3 and > 3 x baseline
    ("threshold", 12, S.FIRING, S.RESOLVED, True),  # false at 11 ([9, 11) is empty), kept 1 minute
    ("spike", 12, S.PENDING, S.FIRING, True),
    ("spike", 13, S.FIRING, S.RESOLVED, True),  # minute 12: 1 conversion
    ("absence", 18, S.NORMAL, S.PENDING, False),  # [15, 18) without g3, with traffic
    ("absence", 19, S.PENDING, S.FIRING, True),
    ("absence", 21, S.FIRING, S.RESOLVED, True),  # g3 again in minute 20
]


def feed(engine: AlertEngine, batches: list[Batch]) -> list[AlertTransition]:
    out: list[AlertTransition] = []
    for events, convs in batches:
        engine.observe(events, convs)
        out += engine.advance()
    return out


def summary(ts: list[AlertTransition]) -> list[tuple[str, int, S, S, bool]]:
    return [
        (t.rule_id, int((t.at - NOW).total_seconds()) // 60, t.from_state, t.to_state, t.notify) for t in ts
    ]


def test_threshold_spike_and_absence_at_the_expected_minutes() -> None:
    out = feed(AlertEngine(RULES), SCRIPT)
    assert sorted(summary(out), key=lambda x: (x[1], x[0])) == sorted(EXPECTED, key=lambda x: (x[1], x[0]))
    firing = next(t for t in out if t.rule_id == "threshold" and t.to_state is S.FIRING)
    assert (firing.value, firing.threshold, firing.episode_started_at) == (
        6.0,
        2.0,
        to_dt(T0 + 6 * MINUTE_MS),
    )


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
    _, convs = SCRIPT[5]
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
    out = engine.advance(T0 + MINUTE_MS + 10_000)
    assert [(t.to_state, t.value) for t in out] == [(S.FIRING, 0.5)]  # 2 of L's conversions / its 4 clicks


def test_change_rule_against_one_week_earlier() -> None:
    r = rule("change", kind="change", change_mode="percent", op="above", value=50, window_s=300)
    engine = AlertEngine([r])
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
    assert engine.bucket_count("p1") <= (WEEK_MS + 300_000) // MINUTE_MS + 3
    assert [(t.to_state, t.at, t.value) for t in transitions] == [
        (S.FIRING, to_dt(T0 + (7 * 1440 + 13) * MINUTE_MS), 60.0),  # [8..13): 3 of 5 minutes doubled
    ]
    # nothing before day 7 (no baseline: no data, policy ok), and the window holds only what a week needs
    assert engine.ledger_size("p1") <= 2 * 5 + 4 * 5 + 10


def test_memory_stays_bounded_over_a_long_stream() -> None:
    engine = AlertEngine([THRESHOLD, SPIKE])
    sizes = []
    for k in range(3 * 1440):
        base = T0 + k * MINUTE_MS
        engine.observe([event(base + 1_000, 1)], [conversion(base + 2_000, f"k{k}", "g1" if k % 2 else "g2")])
        engine.advance()
        sizes.append(engine.bucket_count("p1"))
    keys = len(engine._states["p1"].windows.keys())
    per_key = (SPIKE_BASELINE_MS + 60_000) // MINUTE_MS + 2
    assert max(sizes) <= keys * per_key
    assert max(sizes[-1440:]) - min(sizes[-1440:]) <= 2  # steady state (g1 and g2 alternate minutes)
    assert engine.ledger_size("p1") <= per_key


def test_late_input_inside_the_lateness_counts() -> None:
    engine = AlertEngine([rule("r", kind="threshold", op="above", value=0, window_s=60)])
    engine.observe([event(T0 + MINUTE_MS + 5_000, 1)])  # stream time 1:05, within 10 s lateness
    assert engine.advance() == []  # boundary 1:00 waits until 1:10
    engine.observe((), [conversion(T0 + 59_000, "late", "g")])
    engine.observe([event(T0 + MINUTE_MS + 10_000, 2)])
    assert [t.to_state for t in engine.advance()] == [S.FIRING]


def test_rules_without_projects_keep_nothing_and_idle_ticks_resolve() -> None:
    engine = AlertEngine([rule("r", kind="threshold", op="above", value=0, window_s=60, keep_firing_s=60)])
    engine.observe([event(T0, 1, project="other")], [])
    assert engine.projects() == ["p1"] and engine.bucket_count("p1") == 0
    engine.observe((), [conversion(T0, "k", "g")])
    assert [t.to_state for t in engine.advance(T0 + MINUTE_MS + 10_000)] == [S.FIRING]
    assert engine.advance(T0 + 2 * MINUTE_MS + 10_000) == []  # no data (ok = false) since 2:00
    assert [t.to_state for t in engine.advance(T0 + 3 * MINUTE_MS + 10_000)] == [S.RESOLVED]
    engine.remove_rule("r")
    assert engine.projects() == []


def test_disabled_and_edited_rules() -> None:
    engine = AlertEngine(RULES)
    feed(engine, SCRIPT[:9])
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
