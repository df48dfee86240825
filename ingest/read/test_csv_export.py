import csv
import io
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, Field

from ingest.errors import Rejected
from ingest.read.csv_export import csv_cell, csv_text, report_response, requested_format
from schemas.reports import ProjectRow, TopEventRow, TopEventsReport


def test_rows_with_header_same_values_as_json():
    rows = [
        TopEventRow(goal_id="12345", conversions=2, converters=1, conversion_rate=0.5, revenue=123.23),
        TopEventRow(
            goal_id='a "quoted", goal', conversions=1, converters=1, conversion_rate=1 / 3, revenue=0
        ),
    ]
    text = csv_text(TopEventRow, rows)
    assert text.startswith("goal_id,conversions,converters,conversion_rate,revenue\r\n")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert parsed == [{k: str(v) for k, v in r.model_dump().items()} for r in rows]


def test_empty_report_still_has_the_header():
    assert csv_text(TopEventRow, []) == "goal_id,conversions,converters,conversion_rate,revenue\r\n"


def test_header_uses_serialization_aliases_and_json_values():
    class Row(BaseModel):
        from_: datetime = Field(serialization_alias="from")
        flag: bool
        tags: list[str]
        missing: int | None = None

    row = Row(from_=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), flag=True, tags=["a", "b"])
    assert csv_text(Row, [row]).splitlines() == [
        "from,flag,tags,missing",
        '2026-01-02T03:04:05Z,true,"[""a"",""b""]",',
    ]


@pytest.mark.parametrize("text", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx"])
def test_text_that_a_spreadsheet_would_run_is_defused(text):
    assert csv_cell(text) == "'" + text


def test_numbers_are_never_changed():
    assert csv_cell(-1.5) == "-1.5" and csv_cell(-2) == "-2" and csv_cell("12345") == "12345"


def test_format_parameter():
    assert requested_format(None) == "json" and requested_format("csv") == "csv"
    with pytest.raises(Rejected) as err:
        requested_format("xlsx")
    assert err.value.status == 400 and "json, csv" in err.value.message
    assert err.value.details == [{"field": "format", "allowed": ["json", "csv"]}]


def test_response_content_type_and_safe_file_name():
    report = TopEventsReport(
        project='x"; y\r\nz',
        from_=datetime(2026, 1, 1, tzinfo=UTC),
        to=datetime(2026, 2, 1, tzinfo=UTC),
        visitors=0,
        rows=[],
    )
    resp = report_response("csv", report, report.rows, TopEventRow, f"top-events-{report.project}")
    assert resp.content_type == "text/csv" and resp.charset == "utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="top-events-x_y_z.csv"'
    as_json = report_response("json", report, report.rows, TopEventRow, "top-events")
    assert as_json.content_type == "application/json"
    assert '"from":"2026-01-01T00:00:00Z"' in (as_json.text or "")


def test_projects_rows():
    row = ProjectRow(project="p1", last_event_at=datetime(2026, 1, 1, 12, tzinfo=UTC))
    assert csv_text(ProjectRow, [row]).splitlines() == ["project,last_event_at", "p1,2026-01-01T12:00:00Z"]
