"""Exchange rates: the ``trackpipe fx load FILE.csv`` loader and the conversion rule the reports use.

File format (UTF-8 CSV, a header row naming the columns, in any order; blank lines ignored)::

    date,base,quote,rate
    2026-01-09,EUR,USD,1.0832

meaning 1 ``base`` = ``rate`` ``quote`` on ``date`` (ISO ``YYYY-MM-DD``). Currencies are 3-letter codes
(case-insensitive, stored upper case); ``rate`` is a positive decimal number (at most 18 decimal places,
below 10^12). A file naming the same (date, base, quote) twice with different rates is refused. Every
problem is reported with its line number; nothing is loaded from a file with a problem.

Conversion (:class:`RateBook`): an amount in currency ``C`` on day ``D`` is converted into the target
currency ``T`` with the latest rate on or before ``D``: a ``C -> T`` row, or the inverse of a ``T -> C``
row (on the same day the direct row wins). No cross rates through a third currency. An empty currency
and ``C == T`` need no rate, neither does an amount of 0; any other amount without a rate stays
unconverted (the reports leave it out of the converted revenue and count it in
``unconverted_conversions``).
"""

from __future__ import annotations

import bisect
import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Context, Decimal, InvalidOperation

import pyarrow as pa

from sinks.backend import ClickHouseBackend

COLUMNS = ("date", "base", "quote", "rate")
MAX_RATE = Decimal(10) ** 12
RATE_SCALE = 18
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: ClickHouse ``Date`` range
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(2149, 6, 6)
_Q = Decimal("0.0001")
#: exact enough for any sum of amounts (< 10^12) times rates (< 10^12, 18 decimal places)
_CTX = Context(prec=80)


class RatesFileError(ValueError):
    """The file has problems; ``problems`` lists them as ``line N: what``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:20]
        more = f"\n... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__("\n".join(shown) + more)


@dataclass(frozen=True, order=True)
class Rate:
    day: date
    base: str
    quote: str
    rate: Decimal


def parse_rates(text: str) -> list[Rate]:
    """The rates of a CSV text, sorted and without exact repeats; :class:`RatesFileError` on problems."""
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""))
    problems: list[str] = []
    header: list[str] | None = None
    seen: dict[tuple[date, str, str], tuple[Decimal, int]] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            missing = [c for c in COLUMNS if c not in header]
            unknown = [c for c in header if c not in COLUMNS]
            repeated = sorted({c for c in header if header.count(c) > 1})
            if missing or unknown or repeated:
                what = []
                if missing:
                    what.append(f"missing column(s) {', '.join(missing)}")
                if unknown:
                    what.append(f"unknown column(s) {', '.join(repr(c) for c in unknown)}")
                if repeated:
                    what.append(f"repeated column(s) {', '.join(repeated)}")
                raise RatesFileError(
                    [f"line {line}: header must name the columns {','.join(COLUMNS)}: {'; '.join(what)}"]
                )
            continue
        if len(row) != len(header):
            problems.append(f"line {line}: {len(row)} fields, the header has {len(header)}")
            continue
        cells = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
        rate = _parse_row(cells, line, problems)
        if rate is None:
            continue
        key = (rate.day, rate.base, rate.quote)
        earlier = seen.get(key)
        if earlier is None:
            seen[key] = (rate.rate, line)
        elif earlier[0] != rate.rate:
            problems.append(
                f"line {line}: {rate.base}->{rate.quote} on {rate.day} is {rate.rate} here "
                f"but {earlier[0]} on line {earlier[1]}"
            )
    if header is None:
        problems.append(f"line 1: empty file: expected a header {','.join(COLUMNS)} and rate rows")
    elif not seen and not problems:
        problems.append(f"line {reader.line_num}: no rate rows after the header")
    if problems:
        raise RatesFileError(problems)
    return sorted(Rate(day, base, quote, value) for (day, base, quote), (value, _) in seen.items())


def _parse_row(cells: dict[str, str], line: int, problems: list[str]) -> Rate | None:
    found = len(problems)
    day: date | None = None
    raw_day = cells["date"]
    if not _DATE.match(raw_day):
        problems.append(f"line {line}: date {raw_day[:40]!r} is not YYYY-MM-DD")
    else:
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            problems.append(f"line {line}: date {raw_day!r} does not exist")
        else:
            if not FIRST_DAY <= day <= LAST_DAY:
                problems.append(f"line {line}: date {raw_day} is outside {FIRST_DAY}..{LAST_DAY}")
    codes = []
    for name in ("base", "quote"):
        code = cells[name]
        if not _CURRENCY.match(code):
            problems.append(f"line {line}: {name} {code[:40]!r} is not a 3-letter currency code")
        codes.append(code.upper())
    if len(problems) == found and codes[0] == codes[1]:
        problems.append(f"line {line}: base and quote are both {codes[0]}")
    raw_rate = cells["rate"]
    value: Decimal | None = None
    try:
        value = Decimal(raw_rate)
    except InvalidOperation:
        problems.append(f"line {line}: rate {raw_rate[:40]!r} is not a decimal number")
    if value is not None:
        if not value.is_finite() or value <= 0 or value >= MAX_RATE:
            problems.append(f"line {line}: rate {raw_rate[:40]!r} must be a number above 0 and below 10^12")
        elif -int(value.as_tuple().exponent) > RATE_SCALE:
            problems.append(f"line {line}: rate {raw_rate[:40]!r} has more than {RATE_SCALE} decimal places")
    if len(problems) > found or day is None or value is None:
        return None
    return Rate(day, codes[0], codes[1], value)


def rates_table(rates: Sequence[Rate], loaded_at: datetime) -> pa.Table:
    scale = Decimal(1).scaleb(-RATE_SCALE)
    return pa.table(
        {
            "day": pa.array([r.day for r in rates], type=pa.date32()),
            "base": pa.array([r.base for r in rates], type=pa.string()),
            "quote": pa.array([r.quote for r in rates], type=pa.string()),
            "rate": pa.array([r.rate.quantize(scale) for r in rates], type=pa.decimal128(38, RATE_SCALE)),
            "loaded_at": pa.array([loaded_at] * len(rates), type=pa.timestamp("ms", tz="UTC")),
        }
    )


@dataclass(frozen=True)
class LoadResult:
    rates: int
    pairs: list[str]
    first_day: date
    last_day: date


def load_rates(backend: ClickHouseBackend, rates: Sequence[Rate], now: datetime | None = None) -> LoadResult:
    """Store ``rates`` (replacing the rates stored for the same day and pair)."""
    if not rates:
        raise ValueError("no rates to load")
    backend.insert_arrow("fx_rates", rates_table(rates, (now or datetime.now(UTC)).astimezone(UTC)))
    return LoadResult(
        rates=len(rates),
        pairs=sorted({f"{r.base}->{r.quote}" for r in rates}),
        first_day=min(r.day for r in rates),
        last_day=max(r.day for r in rates),
    )


def set_project_currency(backend: ClickHouseBackend, project: str, currency: str | None) -> None:
    """The currency reports of ``project`` convert into; None: no conversion."""
    code = (currency or "").upper()
    if code and not _CURRENCY.match(code):
        raise ValueError(f"{currency!r} is not a 3-letter currency code")
    backend.command(
        "INSERT INTO project_settings (project_id, currency, updated_at) "
        "VALUES ({p:String}, {c:String}, now64(3, 'UTC'))",
        {"p": project, "c": code},
    )


PROJECT_CURRENCY_SQL = """
SELECT currency FROM project_settings FINAL WHERE project_id = {project:String}
"""
RATES_SQL = """
SELECT base, quote, day, toString(rate)
FROM fx_rates FINAL
WHERE day <= {last:Date}
  AND ((quote = {target:String} AND has({currencies:Array(String)}, base))
    OR (base = {target:String} AND has({currencies:Array(String)}, quote)))
ORDER BY day, base, quote
"""


def project_currency(backend: ClickHouseBackend, project: str | None) -> str | None:
    if not project:
        return None
    rows = backend.query(PROJECT_CURRENCY_SQL, {"project": project})
    return (str(rows[0][0]) or None) if rows else None


@dataclass
class RateBook:
    """Rates into ``target``: per source currency, days ascending with their rate (``C -> target``)."""

    target: str
    _days: dict[str, list[date]] = field(default_factory=dict)
    _rates: dict[str, list[tuple[Decimal, bool]]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, target: str, rows: Iterable[tuple[str, str, date, Decimal]]) -> RateBook:
        """``rows``: (base, quote, day, rate) sorted by day; rows not touching ``target`` are ignored."""
        book = cls(target)
        for base, quote, day, rate in rows:
            if quote == target and base != target:
                book._add(base, day, rate, direct=True)
            elif base == target and quote != target:
                book._add(quote, day, rate, direct=False)
        return book

    def _add(self, currency: str, day: date, rate: Decimal, direct: bool) -> None:
        days = self._days.setdefault(currency, [])
        rates = self._rates.setdefault(currency, [])
        if days and days[-1] == day:
            if rates[-1][1] and not direct:
                return  # same day: the direct rate wins
            rates[-1] = (rate, direct)
            return
        if days and days[-1] > day:
            raise ValueError("rates must be given by ascending day")
        days.append(day)
        rates.append((rate, direct))

    def convert(self, amount: Decimal, currency: str, day: date) -> Decimal | None:
        """``amount`` of ``currency`` on ``day`` in the target currency, unrounded; None without a rate."""
        if amount == 0 or currency in ("", self.target):
            return amount
        days = self._days.get(currency)
        if not days:
            return None
        at = bisect.bisect_right(days, day) - 1
        if at < 0:
            return None
        rate, direct = self._rates[currency][at]
        return _CTX.multiply(amount, rate) if direct else _CTX.divide(amount, rate)


def load_book(backend: ClickHouseBackend, target: str, currencies: Iterable[str], last: date) -> RateBook:
    needed = sorted({c for c in currencies if c and c != target})
    if not needed:
        return RateBook(target)
    rows = backend.query(RATES_SQL, {"target": target, "currencies": needed, "last": last.isoformat()})
    return RateBook.from_rows(target, ((str(b), str(q), d, Decimal(str(r))) for b, q, d, r in rows))


@dataclass
class Money:
    """Revenue of a set of conversions: converted into ``target`` (None: not converted) and raw."""

    target: str | None
    converted: Decimal = Decimal(0)
    raw: dict[str, Decimal] = field(default_factory=dict)
    unconverted: int = 0

    def add(self, book: RateBook | None, currency: str, day: date, amount: Decimal, counted: int) -> None:
        """``amount``: the sum of ``counted`` conversions of ``currency`` on ``day`` with an amount."""
        self.raw[currency] = _CTX.add(self.raw.get(currency, Decimal(0)), amount)
        value = amount if book is None else book.convert(amount, currency, day)
        if value is None:
            self.unconverted += counted
        else:
            self.converted = _CTX.add(self.converted, value)

    def merge(self, other: Money) -> None:
        self.converted = _CTX.add(self.converted, other.converted)
        for currency, amount in other.raw.items():
            self.raw[currency] = _CTX.add(self.raw.get(currency, Decimal(0)), amount)
        self.unconverted += other.unconverted

    @property
    def value(self) -> float:
        return round(float(self.converted.quantize(_Q, context=_CTX)), 4)

    def raw_values(self) -> dict[str, float]:
        return {
            c: round(float(a.quantize(_Q, context=_CTX)), 4) for c, a in sorted(self.raw.items()) if a != 0
        }
