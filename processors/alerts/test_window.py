from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.alerts.ledger import Entry, Ledger
from processors.alerts.window import (
    MINUTE_MS,
    PROJECT,
    SECOND_MS,
    ScopeKey,
    Totals,
    WindowStore,
    key_from_text,
    key_text,
    minute_of,
    revenue_units,
)

KEYS = [PROJECT, ("g1", None, None), (None, "l1", "c=1"), ("g1", "l1", None)]
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z

OPS = st.lists(
    st.one_of(
        # add: key, second offset, conversions, revenue, traffic
        st.tuples(
            st.just("add"),
            st.sampled_from(KEYS),
            st.integers(0, 150),
            st.integers(-2, 5),
            st.integers(-10_000, 10_000_000),
            st.integers(0, 5),
        ),
        # sum over seconds / minutes: key, start, length (the windows slide, jump, go back, change length)
        st.tuples(st.just("sum"), st.sampled_from(KEYS), st.integers(-20, 170), st.integers(0, 90)),
        st.tuples(st.just("min"), st.sampled_from(KEYS), st.integers(-1, 3), st.integers(0, 4)),
        # slide: a window of one of a few lengths moves by small steps from where it was (running sums)
        st.tuples(
            st.just("slide"),
            st.sampled_from(KEYS),
            st.sampled_from([5, 30, 61]),
            st.lists(st.integers(-4, 6), min_size=1, max_size=12),
        ),
        # fill: traffic in every second of a range (dense buckets: the sums move rather than recount)
        st.tuples(st.just("fill"), st.sampled_from(KEYS), st.integers(0, 150), st.integers(1, 80)),
        st.tuples(st.just("prune"), st.integers(0, 150), st.integers(0, 3)),
        st.tuples(st.just("sweep")),
    ),
    max_size=120,
)


def naive(items: list[tuple[ScopeKey, int, int, int, int]], key: ScopeKey, start: int, end: int) -> Totals:
    inside = [(c, r, t) for k, at, c, r, t in items if k == key and start <= at < end]
    return Totals(sum(x[0] for x in inside), sum(x[1] for x in inside), sum(x[2] for x in inside))


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_running_sums_equal_a_naive_recount(ops: list[tuple[Any, ...]]) -> None:
    """Whatever the order of adds, prunes and window queries (sliding, jumping, going back, of several
    lengths at once), every sum equals the naive sum of what was added and is still kept; and a dump loads
    back to a store that answers the same."""
    store = WindowStore()
    store.keep_keys(set(KEYS))
    kept: list[tuple[ScopeKey, int, int, int, int]] = []  # what each level still holds, as added
    kept_min: list[tuple[ScopeKey, int, int, int, int]] = []
    sec_floor = min_floor = -(10**18)
    queried: list[tuple[str, ScopeKey, int, int]] = []
    cursors: dict[int, int] = {}
    for op in ops:
        if op[0] == "add":
            _, key, sec, c, r, t = op
            at = T0 + sec * SECOND_MS + 250  # anywhere in the second
            store.add(key, at, conversions=c, revenue=r, traffic=t)
            if T0 + sec * SECOND_MS >= sec_floor:
                kept.append((key, T0 + sec * SECOND_MS, c, r, t))
            if minute_of(at) >= min_floor:
                kept_min.append((key, minute_of(at), c, r, t))
        elif op[0] == "fill":
            _, key, first, n = op
            for sec in range(first, first + n):
                store.add(key, T0 + sec * SECOND_MS, traffic=1)
                if T0 + sec * SECOND_MS >= sec_floor:
                    kept.append((key, T0 + sec * SECOND_MS, 0, 0, 1))
                if minute_of(T0 + sec * SECOND_MS) >= min_floor:
                    kept_min.append((key, minute_of(T0 + sec * SECOND_MS), 0, 0, 1))
        elif op[0] == "slide":
            _, key, length, deltas = op
            for d in deltas:
                cursors[length] = cursors.get(length, 0) + d
                a, b = T0 + cursors[length] * SECOND_MS, T0 + (cursors[length] + length) * SECOND_MS
                assert store.sum(key, a, b) == naive(kept, key, a, b)
                queried.append(("s", key, a, b))
        elif op[0] == "sum":
            _, key, start, length = op
            a, b = T0 + start * SECOND_MS, T0 + (start + length) * SECOND_MS
            assert store.sum(key, a, b) == naive(kept, key, a, b)
            queried.append(("s", key, a, b))
        elif op[0] == "min":
            _, key, start, length = op
            a, b = T0 + start * MINUTE_MS, T0 + (start + length) * MINUTE_MS
            assert store.sum_minutes(key, a, b) == naive(kept_min, key, a, b)
            queried.append(("m", key, a, b))
        elif op[0] == "prune":
            _, sec, minute = op
            cut_s, cut_m = T0 + sec * SECOND_MS, T0 + minute * MINUTE_MS
            store.prune({k: (cut_s, cut_m) for k in KEYS})
            sec_floor, min_floor = max(sec_floor, cut_s), max(min_floor, cut_m)
            kept = [x for x in kept if x[1] >= sec_floor]
            kept_min = [x for x in kept_min if x[1] >= min_floor]
        else:
            store.sweep()
    loaded = WindowStore.load(store.dump())
    assert loaded.dump() == store.dump()
    for level, key, a, b in queried:
        if level == "s":
            assert loaded.sum(key, a, b) == store.sum(key, a, b) == naive(kept, key, a, b)
        else:
            assert loaded.sum_minutes(key, a, b) == store.sum_minutes(key, a, b) == naive(kept_min, key, a, b)
    assert store.bucket_count() <= len({(k, at) for k, at, *_ in kept}) + len(
        {(k, m) for k, m, *_ in kept_min}
    )


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.integers(0, 200), st.integers(1, 3), min_size=20, max_size=150),
    st.lists(
        st.tuples(st.sampled_from([5, 30, 61]), st.integers(-5, 8), st.none() | st.integers(0, 220)),
        min_size=1,
        max_size=80,
    ),
)
def test_sliding_sums_over_dense_buckets(
    filled: dict[int, int], moves: list[tuple[int, int, int | None]]
) -> None:
    """Windows of a few lengths slide back and forth over dense second buckets while late input lands
    anywhere (inside, ahead of or behind each window): each sum equals the naive one."""
    store = WindowStore()
    store.keep_keys(set())
    items: list[tuple[ScopeKey, int, int, int, int]] = []
    for sec, n in filled.items():
        store.add(PROJECT, T0 + sec * SECOND_MS, traffic=n)
        items.append((PROJECT, T0 + sec * SECOND_MS, 0, 0, n))
    cursors: dict[int, int] = {}
    for length, delta, late in moves:
        if late is not None:
            store.add(PROJECT, T0 + late * SECOND_MS + 999, conversions=1, traffic=1)
            items.append((PROJECT, T0 + late * SECOND_MS, 1, 0, 1))
        cursors[length] = cursors.get(length, 100) + delta
        a, b = T0 + cursors[length] * SECOND_MS, T0 + (cursors[length] + length) * SECOND_MS
        assert store.sum(PROJECT, a, b) == naive(items, PROJECT, a, b)


def test_a_sliding_window_is_moved_not_recounted() -> None:
    store = WindowStore()
    store.keep_keys(set())
    for s in range(0, 3600):
        store.add(PROJECT, T0 + s * SECOND_MS, traffic=1)
    level = store._levels[PROJECT][0]
    assert store.sum(PROJECT, T0, T0 + 600 * SECOND_MS).traffic == 600
    lookups = 0
    get = level.buckets.get

    def counting_get(b: int) -> list[int] | None:
        nonlocal lookups
        lookups += 1
        return get(b)

    level.buckets = _Counting(level.buckets, counting_get)
    for s in range(1, 1000):
        start = T0 + s * SECOND_MS
        assert store.sum(PROJECT, start, start + 600 * SECOND_MS).traffic == min(600, 3600 - s)
    assert lookups <= 2 * 999  # one bucket in, one out per slide


class _Counting(dict[int, list[int]]):
    def __init__(self, data: dict[int, list[int]], get: Any) -> None:
        super().__init__(data)
        self._get = get

    def get(self, key: int, default: Any = None) -> Any:
        return self._get(key)


def test_input_below_the_floor_is_dropped_and_since_follows_the_minute_floor() -> None:
    store = WindowStore()
    store.keep_keys({("g", None, None)}, since_ms=T0)
    store.prune({PROJECT: (T0 + 10 * SECOND_MS, T0 + 2 * MINUTE_MS)})
    store.add(PROJECT, T0 + 5 * SECOND_MS, conversions=1)  # below both floors
    store.add(PROJECT, T0 + MINUTE_MS * 2 - 1, conversions=1)  # above the second floor only
    assert store.sum(PROJECT, T0, T0 + 3 * MINUTE_MS).conversions == 1
    assert store.sum_minutes(PROJECT, T0, T0 + 3 * MINUTE_MS).conversions == 0
    assert store.since(PROJECT) == T0 + 2 * MINUTE_MS and store.since(("g", None, None)) == T0


def test_keys_kept_and_dropped() -> None:
    store = WindowStore()
    store.keep_keys({("g1", None, None)})
    store.add(("g1", None, None), T0, conversions=1)
    store.add(("g2", None, None), T0, conversions=1)  # not kept: ignored
    assert store.bucket_count() == 2 and set(store.keys()) == {PROJECT, ("g1", None, None)}
    store.keep_keys(set())
    assert store.bucket_count() == 0 and store.keys() == [PROJECT]


def test_a_bucket_back_to_zero_is_removed() -> None:
    store = WindowStore()
    store.keep_keys(set())
    store.add(PROJECT, T0, conversions=1, revenue=5)
    assert store.bucket_count() == 2  # its second and its minute
    store.add(PROJECT, T0, conversions=-1, revenue=-5)
    assert store.bucket_count() == 0


@given(st.tuples(st.none() | st.text(max_size=5), st.none() | st.text(max_size=5), st.none() | st.text()))
def test_key_text_round_trips(key: tuple[str | None, str | None, str | None]) -> None:
    assert key_from_text(key_text(key)) == key


def test_revenue_units_are_exact_ten_thousandths() -> None:
    assert revenue_units(Decimal("12.3456")) == 123456
    assert revenue_units(Decimal("0.00005")) == 0  # half to even
    assert revenue_units(Decimal("-1.5")) == -15000


def test_ledger_dump_load_and_prune() -> None:
    ledger = Ledger()
    ledger.entries[("g", "k1")] = Entry(T0, 10, True, 2, "l", "c")
    ledger.entries[("g", "k0")] = Entry(T0 + SECOND_MS, 0, False, 1, "", "")
    again = Ledger.load(ledger.dump())
    assert again.entries == ledger.entries
    again.prune(T0 + SECOND_MS)
    assert list(again.entries) == [("g", "k0")]
