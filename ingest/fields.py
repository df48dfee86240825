"""Validation of the scalar fields the click, postback and conversion formats share.

Each helper takes the raw value (query string or decoded JSON) and the field's name as the client sent
it, and raises a 400 :class:`~ingest.errors.Rejected` naming that field on bad input.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ingest.errors import bad_request

MAX_AMOUNT = Decimal("1e12")
_Q = Decimal("0.0001")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def text(raw: Any, field: str, *, max_len: int = 200, required: bool = False) -> str | None:
    """A short printable string (numbers are accepted and turned into their decimal text)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            raise bad_request("missing_field", f"{field}: a value is required")
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise bad_request("invalid_field", f"{field}: expected a string, got {type(raw).__name__}")
    value = str(raw).strip()
    if len(value) > max_len:
        raise bad_request("invalid_field", f"{field}: longer than {max_len} characters")
    if not _PRINTABLE.match(value):
        raise bad_request("invalid_field", f"{field}: contains control characters")
    return value


def amount(raw: Any, field: str) -> Decimal | None:
    """A money amount: 0 <= amount <= 10^12, kept to 4 decimal places."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        raise bad_request("invalid_field", f"{field}: expected a number, got {type(raw).__name__}")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise bad_request("invalid_field", f"{field}: {str(raw)[:40]!r} is not a number") from None
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        raise bad_request("invalid_field", f"{field}: {str(raw)[:40]!r} is out of range (0 to 10^12)")
    return value.quantize(_Q)


def currency(raw: Any, field: str = "currency") -> str | None:
    """An ISO 4217 style code: three letters, returned upper case."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str) or not _CURRENCY.match(raw.strip()):
        raise bad_request("invalid_field", f"{field}: {str(raw)[:40]!r} is not a 3-letter currency code")
    return raw.strip().upper()


def flag(raw: Any, field: str) -> bool:
    """A boolean sent as true/false, 1/0, yes/no, on/off (empty or absent = false)."""
    if raw is None:
        return False
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request("invalid_field", f"{field}: {str(raw)[:40]!r} is not true or false")
