from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from sinks.fx import Money, Rate, RateBook, RatesFileError, parse_rates, rates_table


def problems(text: str) -> list[str]:
    with pytest.raises(RatesFileError) as info:
        parse_rates(text)
    return info.value.problems


def test_parses_rates_in_any_column_order_and_case() -> None:
    text = "\ufeffRate, Date ,BASE,quote\r\n1.0832,2026-01-09,eur,USD\r\n\r\n0.86,2026-01-08,GBP,eur\r\n"
    assert parse_rates(text) == [
        Rate(date(2026, 1, 8), "GBP", "EUR", Decimal("0.86")),
        Rate(date(2026, 1, 9), "EUR", "USD", Decimal("1.0832")),
    ]


def test_an_exact_repeat_is_kept_once_a_conflicting_one_names_both_lines() -> None:
    assert len(parse_rates("date,base,quote,rate\n2026-01-09,EUR,USD,1.08\n2026-01-09,EUR,USD,1.080\n")) == 1
    assert problems("date,base,quote,rate\n2026-01-09,EUR,USD,1.08\n2026-01-09,eur,usd,1.09\n") == [
        "line 3: EUR->USD on 2026-01-09 is 1.09 here but 1.08 on line 2"
    ]


def test_every_bad_line_is_reported_with_its_number_and_problem() -> None:
    text = "\n".join(
        [
            "date,base,quote,rate",
            "2026-01-09,EUR,USD,1.08",
            "09/01/2026,EUR,USD,1.08",
            "2026-02-30,EUR,USD,1.08",
            "2026-01-09,EURO,USD,1.08",
            "2026-01-09,EUR,U1D,1.08",
            "2026-01-09,EUR,eur,1.08",
            "2026-01-09,EUR,GBP,abc",
            "2026-01-09,EUR,JPY,0",
            "2026-01-09,EUR,CHF,-1",
            "2026-01-09,EUR,SEK,1e12",
            "2026-01-09,EUR,NOK,0.1234567890123456789",
            "2026-01-09,EUR,DKK,NaN",
            "2026-01-09,EUR,PLN",
            "1960-01-01,EUR,CZK,25",
        ]
    )
    assert problems(text) == [
        "line 3: date '09/01/2026' is not YYYY-MM-DD",
        "line 4: date '2026-02-30' does not exist",
        "line 5: base 'EURO' is not a 3-letter currency code",
        "line 6: quote 'U1D' is not a 3-letter currency code",
        "line 7: base and quote are both EUR",
        "line 8: rate 'abc' is not a decimal number",
        "line 9: rate '0' must be a number above 0 and below 10^12",
        "line 10: rate '-1' must be a number above 0 and below 10^12",
        "line 11: rate '1e12' must be a number above 0 and below 10^12",
        "line 12: rate '0.1234567890123456789' has more than 18 decimal places",
        "line 13: rate 'NaN' must be a number above 0 and below 10^12",
        "line 14: 3 fields, the header has 4",
        "line 15: date 1960-01-01 is outside 1970-01-01..2149-06-06",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "line 1: empty file: expected a header date,base,quote,rate and rate rows"),
        ("\n\n", "line 1: empty file: expected a header date,base,quote,rate and rate rows"),
        ("date,base,quote,rate\n", "line 1: no rate rows after the header"),
        (
            "2026-01-09,EUR,USD,1.08\n",
            "line 1: header must name the columns date,base,quote,rate: missing column(s) date, base, "
            "quote, rate; unknown column(s) '2026-01-09', 'eur', 'usd', '1.08'",
        ),
        (
            "date,base,quote,rate,rate\n",
            "line 1: header must name the columns date,base,quote,rate: repeated column(s) rate",
        ),
    ],
)
def test_a_file_without_header_or_rows_is_refused(text: str, expected: str) -> None:
    assert problems(text) == [expected]


def test_the_arrow_table_matches_the_clickhouse_columns() -> None:
    at = datetime(2026, 1, 10, 12, tzinfo=UTC)
    table = rates_table([Rate(date(2026, 1, 9), "EUR", "USD", Decimal("1.0832"))], at)
    assert table.column_names == ["day", "base", "quote", "rate", "loaded_at"]
    row = table.to_pylist()[0]
    assert row["rate"] == Decimal("1.083200000000000000") and row["day"] == date(2026, 1, 9)
    assert row["loaded_at"] == at


def book() -> RateBook:
    rows = [
        ("EUR", "USD", date(2026, 1, 5), Decimal("1.10")),
        ("USD", "GBP", date(2026, 1, 5), Decimal("0.8")),  # inverse of GBP -> USD
        ("EUR", "USD", date(2026, 1, 8), Decimal("1.20")),
        ("USD", "EUR", date(2026, 1, 8), Decimal("0.5")),  # same day as a direct rate: ignored
        ("GBP", "USD", date(2026, 1, 9), Decimal("1.30")),
        ("EUR", "GBP", date(2026, 1, 1), Decimal("0.9")),  # not touching USD: ignored
    ]
    return RateBook.from_rows("USD", rows)


def test_the_rate_is_the_latest_on_or_before_the_day() -> None:
    b = book()
    assert b.convert(Decimal(100), "EUR", date(2026, 1, 4)) is None  # before the first rate
    assert b.convert(Decimal(100), "EUR", date(2026, 1, 5)) == Decimal("110.00")
    assert b.convert(Decimal(100), "EUR", date(2026, 1, 7)) == Decimal("110.00")
    assert b.convert(Decimal(100), "EUR", date(2026, 1, 8)) == Decimal("120.00")
    assert b.convert(Decimal(100), "EUR", date(2027, 1, 1)) == Decimal("120.00")
    assert b.convert(Decimal(100), "GBP", date(2026, 1, 6)) == Decimal(125)  # 100 / 0.8
    assert b.convert(Decimal(100), "GBP", date(2026, 1, 9)) == Decimal("130.00")


def test_no_rate_is_needed_for_the_target_an_empty_currency_or_nothing() -> None:
    b = book()
    assert b.convert(Decimal(7), "USD", date(2000, 1, 1)) == Decimal(7)
    assert b.convert(Decimal(7), "", date(2000, 1, 1)) == Decimal(7)
    assert b.convert(Decimal(0), "JPY", date(2000, 1, 1)) == Decimal(0)
    assert b.convert(Decimal(7), "JPY", date(2026, 1, 9)) is None  # no cross rates, no JPY at all


def test_money_converts_counts_unconverted_and_keeps_the_raw_amounts() -> None:
    m = Money("USD")
    b = book()
    m.add(b, "EUR", date(2026, 1, 8), Decimal("10.5"), 2)
    m.add(b, "USD", date(2026, 1, 8), Decimal("1"), 1)
    m.add(b, "JPY", date(2026, 1, 8), Decimal("1000"), 3)
    m.add(b, "", date(2026, 1, 8), Decimal("0"), 0)
    other = Money("USD")
    other.add(b, "GBP", date(2026, 1, 6), Decimal("1"), 1)
    m.merge(other)
    assert m.value == 12.6 + 1 + 1.25
    assert m.unconverted == 3
    assert m.raw_values() == {"EUR": 10.5, "GBP": 1.0, "JPY": 1000.0, "USD": 1.0}
    unconverted = Money(None)
    unconverted.add(None, "EUR", date(2026, 1, 8), Decimal("2"), 1)
    unconverted.add(None, "JPY", date(2026, 1, 8), Decimal("3"), 1)
    assert (unconverted.value, unconverted.unconverted) == (5.0, 0)


def test_conversion_is_exact_and_rounded_once() -> None:
    b = RateBook.from_rows("EUR", [("USD", "EUR", date(2026, 1, 1), Decimal("0.5"))])
    m = Money("EUR")
    for _ in range(3):
        m.add(b, "USD", date(2026, 1, 2), Decimal("0.0001"), 1)
    # 3 x 0.0001 x 0.5 = 0.00015, rounded once (half to even): 0.0002; rounding each would give 0
    assert m.converted == Decimal("0.00015") and m.value == 0.0002
    third = RateBook.from_rows("EUR", [("EUR", "USD", date(2026, 1, 1), Decimal(3))])
    inverse = third.convert(Decimal(1), "USD", date(2026, 1, 1))  # 1 / 3, to 80 digits
    assert inverse is not None and str(inverse) == "0." + "3" * 80
