"""Validation of the scalar fields the click, postback and conversion formats share.

Each helper takes the raw value (query string or decoded JSON) and the field's name as the client sent
it, and raises a 400 :class:`~ingest.errors.Rejected` naming that field on bad input.

What every format accepts (README, "Accepted input"; decisions in docs/decisions.md):

- amounts: a JSON number, or text that is a plain ASCII decimal (``12``, ``12.50``): no exponent, no
  ``+``, no ``_`` separators, no ``nan``/``inf``, no digits of other scripts (Arabic-Indic, full-width, ...);
- counts and indices: ASCII digits only;
- currencies: an active ISO 4217 code (:mod:`schemas.currencies`), any case, stored upper case;
- ids and other text: no control characters (:func:`control_free`: C0/C1 controls, DEL, bidirectional
  formatting characters, line/paragraph separators, and lone surrogates, which are what undecodable
  bytes become in aiohttp's headers).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from ingest.errors import bad_request
from schemas.currencies import ISO_4217

MAX_AMOUNT = Decimal("1e12")
_Q = Decimal("0.0001")
#: Money as people and programs write it. A leading '-' is read so that it is refused as out of range.
_PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_ASCII_SPACE = " \t"
#: C0 controls, DEL and C1 controls; ALM, LRM, RLM and the bidi embeddings, overrides and isolates (they
#: reorder what a dashboard shows); line and paragraph separators; lone surrogates.
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def control_char(value: str) -> str | None:
    """The first control character in ``value`` (see :data:`CONTROL_CHARS`), or None."""
    if value.isprintable():  # the usual case, in C; what it refuses includes every control character
        return None
    m = CONTROL_CHARS.search(value)
    return m.group() if m else None


def control_problem(value: str) -> str | None:
    """What is wrong with ``value`` as an id or name (no field name), or None when it is fine."""
    found = control_char(value)
    return None if found is None else f"contains control characters (U+{ord(found):04X})"


def control_free(value: str, field: str) -> str:
    """``value`` unchanged; a 400 naming ``field`` if it carries a control character. The one check of
    ids and names on every format (postbacks, conversions, tracking, Pushwoosh, admin)."""
    problem = control_problem(value)
    if problem is not None:
        raise bad_request("invalid_field", f"{field}: {problem}")
    return value


def no_control_chars(value: Any) -> Any:
    """Pydantic before-validator form of :func:`control_free` (the error names the field's location)."""
    if isinstance(value, str) and (problem := control_problem(value)) is not None:
        raise ValueError(problem)
    return value


def text(raw: Any, field: str, *, max_len: int = 200, required: bool = False) -> str | None:
    """A short printable string (numbers are accepted and turned into their decimal text)."""
    if isinstance(raw, str):
        control_free(raw, field)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if required:
            raise bad_request("missing_field", f"{field}: a value is required")
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise bad_request("invalid_field", f"{field}: expected a string, got {type(raw).__name__}")
    value = str(raw).strip()
    if len(value) > max_len:
        raise bad_request("invalid_field", f"{field}: longer than {max_len} characters")
    return value


def decimal_problem(raw: Any) -> str | None:
    """Why ``raw`` is not a number an amount may be made of (None: it is one). Text must be a plain ASCII
    decimal; a JSON number (int or float) is a number whatever its notation, if finite."""
    if isinstance(raw, str):
        if not _PLAIN_DECIMAL.fullmatch(raw.strip(_ASCII_SPACE)):
            return f"{raw[:40]!r} is not a plain decimal number (ASCII digits and an optional '.' fraction)"
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
        return f"expected a number, got {type(raw).__name__}"
    if (isinstance(raw, float) and not math.isfinite(raw)) or (
        isinstance(raw, Decimal) and not raw.is_finite()
    ):
        return f"{raw!r} is not a finite number"
    return None


def plain_decimal(raw: Any) -> Any:
    """Pydantic before-validator form of :func:`decimal_problem` (for a wire model's amount field)."""
    if raw is not None and (problem := decimal_problem(raw)) is not None:
        raise ValueError(problem)
    return raw.strip(_ASCII_SPACE) if isinstance(raw, str) else raw


def ascii_digits(raw: Any) -> Any:
    """Pydantic before-validator: a count given as text is ASCII digits only (``int()`` would also read
    ``1_000`` and ``١٢٣``)."""
    if isinstance(raw, str) and not _ASCII_DIGITS.fullmatch(raw.strip(_ASCII_SPACE)):
        raise ValueError(f"{raw[:40]!r} is not a whole number in ASCII digits")
    return raw


def whole_number(raw: str, field: str, *, max_value: int, what: str = "a whole number") -> int:
    """A count sent as text: ASCII digits, at most ``max_value`` (checked before ``int()``, which refuses
    more than 4300 digits)."""
    value = raw.strip(_ASCII_SPACE)
    if not _ASCII_DIGITS.fullmatch(value) or len(value.lstrip("0")) > len(str(max_value)):
        raise bad_request(
            "invalid_field", f"{field}: {raw[:40]!r} is not {what} (ASCII digits, at most {max_value})"
        )
    number = int(value)
    if number > max_value:
        raise bad_request(
            "invalid_field", f"{field}: {raw[:40]!r} is not {what} (ASCII digits, at most {max_value})"
        )
    return number


def amount(raw: Any, field: str) -> Decimal | None:
    """A money amount: 0 <= amount <= 10^12, kept to 4 decimal places."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    problem = decimal_problem(raw)
    if problem is not None:
        raise bad_request("invalid_field", f"{field}: {problem}")
    try:
        value = Decimal(raw.strip(_ASCII_SPACE) if isinstance(raw, str) else str(raw))
    except InvalidOperation:  # pragma: no cover - decimal_problem admitted only what Decimal reads
        raise bad_request("invalid_field", f"{field}: {str(raw)[:40]!r} is not a number") from None
    if not value.is_finite() or value < 0 or value > MAX_AMOUNT:
        raise bad_request("invalid_field", f"{field}: {str(raw)[:40]!r} is out of range (0 to 10^12)")
    return value.quantize(_Q)


def currency_problem(raw: Any) -> str | None:
    """Why ``raw`` is not a currency (None: it is an active ISO 4217 code, in any case)."""
    if not isinstance(raw, str) or raw.strip(_ASCII_SPACE).upper() not in ISO_4217:
        return f"{str(raw)[:40]!r} is not an ISO 4217 currency code (such as EUR or USD)"
    return None


def iso_currency(raw: Any) -> Any:
    """Pydantic before-validator form of :func:`currency`: the code upper case, or a ValueError."""
    if raw is None:
        return None
    problem = currency_problem(raw)
    if problem is not None:
        raise ValueError(problem)
    return str(raw).strip(_ASCII_SPACE).upper()


def currency(raw: Any, field: str = "currency") -> str | None:
    """An active ISO 4217 code (:mod:`schemas.currencies`), any case, returned upper case."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    problem = currency_problem(raw)
    if problem is not None:
        raise bad_request("invalid_field", f"{field}: {problem}")
    return str(raw).strip(_ASCII_SPACE).upper()


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
