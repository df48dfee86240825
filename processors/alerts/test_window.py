from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from processors.alerts.window import (
    MINUTE_MS,
    PROJECT,
    Entry,
    Ledger,
    Totals,
    WindowStore,
    key_from_text,
    key_text,
    revenue_units,
)

KEYS = [PROJECT, ("g1", None, None), (None, "l1", "c=1"), ("g1", "l1", None)]
T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z

adds = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        st.integers(0, 200),  # minute offset
        st.integers(-2, 5),
        st.integers(-10_000, 10_000_000),
        st.integers(0, 5),
    ),
    max_size=60,
)


@given(adds, st.integers(0, 210), st.integers(0, 210), st.integers(0, 210))
def test_sum_is_the_naive_sum_and_a_dump_loads_back_equal(
    items: list[tuple[tuple[str | None, str | None, str | None], int, int, int, int]],
    a: int,
    b: int,
    cut: int,
) -> None:
    store = WindowStore()
    store.keep_keys(set(KEYS))
    for key, minute, c, r, t in items:
        store.add(key, T0 + minute * MINUTE_MS, conversions=c, revenue=r, traffic=t)
    start, end = T0 + min(a, b) * MINUTE_MS, T0 + max(a, b) * MINUTE_MS
    for key in KEYS:
        inside = [(c, r, t) for k, m, c, r, t in items if k == key and min(a, b) <= m < max(a, b)]
        expected = Totals(sum(x[0] for x in inside), sum(x[1] for x in inside), sum(x[2] for x in inside))
        assert store.sum(key, start, end) == expected
    loaded = WindowStore.load(store.dump())
    assert loaded.dump() == store.dump()
    assert all(loaded.sum(k, start, end) == store.sum(k, start, end) for k in KEYS)
    store.prune(T0 + cut * MINUTE_MS)
    assert store.sum(PROJECT, T0, T0 + cut * MINUTE_MS) == Totals()
    assert store.bucket_count() <= len(KEYS) * max(0, 201 - cut)


def test_keys_kept_and_dropped() -> None:
    store = WindowStore()
    store.keep_keys({("g1", None, None)})
    store.add(("g1", None, None), T0, conversions=1)
    store.add(("g2", None, None), T0, conversions=1)  # not kept: ignored
    assert store.bucket_count() == 1 and set(store.keys()) == {PROJECT, ("g1", None, None)}
    store.keep_keys(set())
    assert store.bucket_count() == 0 and store.keys() == [PROJECT]


def test_a_bucket_back_to_zero_is_removed() -> None:
    store = WindowStore()
    store.add(PROJECT, T0, conversions=1, revenue=5)
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
    ledger.entries[("g", "k0")] = Entry(T0 + MINUTE_MS, 0, False, 1, "", "")
    again = Ledger.load(ledger.dump())
    assert again.entries == ledger.entries
    again.prune(T0 + MINUTE_MS)
    assert list(again.entries) == [("g", "k0")]
