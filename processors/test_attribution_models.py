from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from processors.attribution_models import CREDIT_QUANTUM, MODELS, credits, split, weights

DAY = 86400.0


def test_models_on_four_touches():
    ages = [10 * DAY, 5 * DAY, 2 * DAY, 0.0]  # oldest first
    assert credits("last_click", ages, 7 * DAY) == [Decimal(0)] * 3 + [Decimal(1)]
    assert credits("first_click", ages, 7 * DAY) == [Decimal(1)] + [Decimal(0)] * 3
    assert credits("linear", ages, 7 * DAY) == [Decimal("0.25")] * 4
    assert credits("position_based", ages, 7 * DAY) == [
        Decimal("0.4"),
        Decimal("0.1"),
        Decimal("0.1"),
        Decimal("0.4"),
    ]
    decay = credits("time_decay", [7 * DAY, 0.0], 7 * DAY)  # one half-life older: half the weight
    assert decay == [Decimal("0.333333333"), Decimal("0.666666667")]


def test_position_based_small_paths():
    assert credits("position_based", [0.0], DAY) == [Decimal(1)]
    assert credits("position_based", [DAY, 0.0], DAY) == [Decimal("0.5"), Decimal("0.5")]


def test_linear_thirds_sum_exactly():
    shares = credits("linear", [3.0, 2.0, 1.0], DAY)
    assert sum(shares) == 1 and set(shares) == {Decimal("0.333333334"), Decimal("0.333333333")}
    assert split(Decimal("10.00"), weights("linear", [3.0, 2.0, 1.0], DAY), Decimal("0.0001")) == [
        Decimal("3.3333"),
        Decimal("3.3333"),
        Decimal("3.3334"),
    ]


@given(
    st.lists(st.floats(min_value=0, max_value=90 * DAY), min_size=1, max_size=30),
    st.sampled_from(MODELS),
    st.decimals(min_value=0, max_value=10**9, places=4),
)
def test_every_model_splits_exactly(ages, model, revenue):
    shares = credits(model, ages, 7 * DAY)
    assert sum(shares) == 1 and all(s >= 0 and s % CREDIT_QUANTUM == 0 for s in shares)
    parts = split(revenue, weights(model, ages, 7 * DAY), Decimal("0.0001"))
    assert sum(parts) == revenue
