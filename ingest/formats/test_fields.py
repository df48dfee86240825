"""Shared field validation (issue 11, defect 5): amounts are plain ASCII decimals, currencies are ISO 4217
codes, and ids carry no control characters."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ingest.errors import Rejected
from ingest.formats import fields

NOT_PLAIN_DECIMALS = [
    "1_000",  # Python's Decimal() reads underscores
    "\u0661\u0662\u0663",  # Arabic-Indic 123
    "\uff11\uff12\uff13",  # full-width 123
    "\u0967\u0968\u0969",  # Devanagari 123
    "\u00b2",  # superscript two: isdigit() but not a decimal digit
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "1e3",  # exponents: no client writes money that way (decisions: plain decimals only)
    "+5",
    "0x10",
    "5.",
    ".5",
    "1.2.3",
    "12,50",
    "",
    "\u00a012",
]


@pytest.mark.parametrize("raw", [r for r in NOT_PLAIN_DECIMALS if r.strip()])
def test_amount_accepts_only_plain_ascii_decimals(raw: str) -> None:
    with pytest.raises(Rejected) as exc:
        fields.amount(raw, "value")
    assert exc.value.status == 400 and exc.value.code == "invalid_field"
    assert exc.value.message.startswith("value: ")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12.5", Decimal("12.5000")),
        (" 12.34567 ", Decimal("12.3457")),
        ("0", Decimal("0.0000")),
        ("007", Decimal("7.0000")),
        (12.5, Decimal("12.5000")),
        (99, Decimal("99.0000")),
        (1e-7, Decimal("0.0000")),  # a JSON number is a number whatever its notation
        ("1000000000000", Decimal("1000000000000.0000")),
        (None, None),
        ("  ", None),
    ],
)
def test_amount_plain_values(raw: Any, expected: Decimal | None) -> None:
    assert fields.amount(raw, "value") == expected


@pytest.mark.parametrize("raw", ["-1", "1000000000000.01", -0.5, 1e13])
def test_amount_out_of_range(raw: Any) -> None:
    with pytest.raises(Rejected, match="out of range"):
        fields.amount(raw, "rev")


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity")])
def test_amount_refuses_non_finite_numbers(raw: Any) -> None:
    with pytest.raises(Rejected) as exc:
        fields.amount(raw, "rev")
    assert exc.value.code == "invalid_field" and exc.value.message.startswith("rev: ")


@pytest.mark.parametrize(
    "raw", ["ZZZ", "NaN", "nan", "XYZ", "EU", "EURO", "E1R", "\u20ac\u20ac\u20ac", "ÉUR", 978]
)
def test_currency_must_be_an_iso_4217_code(raw: Any) -> None:
    with pytest.raises(Rejected) as exc:
        fields.currency(raw, "currency")
    assert exc.value.status == 400 and exc.value.code == "invalid_field"
    assert exc.value.message.startswith("currency: ")


@pytest.mark.parametrize(("raw", "expected"), [("EUR", "EUR"), ("usd", "USD"), (" gbp ", "GBP"), ("", None)])
def test_currency_is_normalised_to_upper_case(raw: str, expected: str | None) -> None:
    assert fields.currency(raw) == expected


CONTROLS = ["a\x00b", "a\r\nb", "\u202eevil", "a\x85b", "a\u2066b", "a\x7fb", "a\tb", "a\u2028b", "a\udcffb"]


@pytest.mark.parametrize("raw", CONTROLS)
def test_text_refuses_control_characters_naming_the_field(raw: str) -> None:
    with pytest.raises(Rejected) as exc:
        fields.text(raw, "order_id")
    assert exc.value.status == 400 and exc.value.code == "invalid_field"
    assert exc.value.message.startswith("order_id: ") and "control character" in exc.value.message


@pytest.mark.parametrize(
    "raw", ["caf\u00e9", "a b", "\u00a0x", "\U0001f468\u200d\U0001f469", "\u05e9\u05dc\u05d5\u05dd"]
)
def test_text_keeps_printable_unicode(raw: str) -> None:
    assert fields.text(raw, "order_id") == raw.strip()
