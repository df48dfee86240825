"""Report answers as JSON or CSV: the ``?format=`` parameter, shared by every report endpoint.

A report model has a list of row models; ``format=csv`` answers those rows as ``text/csv`` (RFC 4180,
CRLF line ends, a header row naming the row model's fields), the same rows and values as the JSON
``rows``. Report-level fields (period, visitors, ...) are in the JSON answer only.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from ingest.errors import bad_request

FORMATS = ("json", "csv")
#: A cell starting with one of these is a formula to spreadsheet programs (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def requested_format(value: str | None) -> str:
    """The ``format`` parameter: ``json`` (the default) or ``csv``; anything else is a 400."""
    if value is None:
        return "json"
    if value not in FORMATS:
        raise bad_request(
            "invalid_query",
            f"format must be one of: {', '.join(FORMATS)} (got {value!r})",
            [{"field": "format", "allowed": list(FORMATS)}],
        )
    return value


def csv_cell(value: Any) -> str:
    """One CSV cell from a JSON-mode value. Text that a spreadsheet would run as a formula gets a
    leading ``'`` (numbers are never changed)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return orjson.dumps(value).decode()


def csv_columns(row_model: type[BaseModel]) -> list[str]:
    return [field.serialization_alias or name for name, field in row_model.model_fields.items()]


def csv_text(row_model: type[BaseModel], rows: Sequence[BaseModel]) -> str:
    columns = csv_columns(row_model)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        data = row.model_dump(mode="json", by_alias=True)
        writer.writerow([csv_cell(data[c]) for c in columns])
    return buf.getvalue()


def report_response(
    fmt: str, report: BaseModel, rows: Sequence[BaseModel], row_model: type[BaseModel], name: str
) -> web.Response:
    """Answer ``report`` as JSON, or its ``rows`` as CSV (downloaded as ``<name>.csv``)."""
    if fmt == "csv":
        filename = _UNSAFE_FILENAME.sub("_", name)[:100] or "report"
        return web.Response(
            text=csv_text(row_model, rows),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    return web.Response(body=report.model_dump_json(by_alias=True), content_type="application/json")
