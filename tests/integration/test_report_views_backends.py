"""The dashboard's further reports (sinks/report_views.py) give the same answers from a ClickHouse server
and from the chdb engine, on the conversions of tests/integration/test_fx_reports.py (revenue converted
into USD with the rate of each day; a GBP amount without a rate; a reversed conversion counting nowhere).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from schemas.report_views import DelayQuery, ListQuery, SeriesQuery
from schemas.rows import ProcessedBatch
from sinks import fx, report_views
from sinks.backend import ClickHouseBackend
from sinks.chdb_backend import ChdbBackend
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate
from sinks.server_backend import ServerBackend
from tests.integration.test_fx_reports import NOW, PERIOD, TODAY, P, conversion, rates_csv, server
from tests.integration.test_fx_reports import write as write_fx

__all__ = ["server"]  # the fixture, shared


#: Conversions of another project carrying experiments, one with fewer variations than experiments.
OTHER = ProcessedBatch(
    conversions=tuple(
        conversion(key, visitor, "1", "USD", 1).model_copy(
            update={"project_id": "other", "experiment_ids": ("E1", "E2"), "variation_ids": variations}
        )
        for key, visitor, variations in (("x1", "w1", ("B", "C")), ("x2", "w2", ("B",)))
    )
)


def write(b: ClickHouseBackend) -> None:
    write_fx(b)
    ClickHouseSink(b).write_batch(OTHER, "views/0/0")


def views(b: ClickHouseBackend) -> dict[str, Any]:
    later = NOW + timedelta(hours=1)
    return {
        "series_day": report_views.series(b, SeriesQuery(project=P, **PERIOD)).model_dump(),
        "series_hour": report_views.series(
            b, SeriesQuery(project=P, interval="hour", goal="purchase", **PERIOD)
        ).model_dump(),
        "series_link": report_views.series(b, SeriesQuery(project=P, link="L1", **PERIOD)).model_dump(),
        "links": report_views.report_list(b, "links", ListQuery(project=P, **PERIOD)).model_dump(),
        "experiments": report_views.report_list(
            b, "experiments", ListQuery(project=P, **PERIOD)
        ).model_dump(),
        "delays": report_views.delays(b, DelayQuery(link_id="L1", project=P), later).model_dump(),
        "other": report_views.report_list(
            b, "experiments", ListQuery(project="other", **PERIOD)
        ).model_dump(),
    }


def check(got: dict[str, Any]) -> None:
    day = got["series_day"]
    busy = [r for r in day["rows"] if r["conversions"]]
    assert len(day["rows"]) == 21 and len(busy) == 1, busy  # the reversed one (8 days ago) counts nowhere
    (today,) = busy
    assert today["at"].date() == NOW.date()
    # 100 EUR at 1.1 + 50 USD = 160 USD; 20 GBP has no rate (left out, counted)
    assert (today["conversions"], today["converters"], today["revenue"]) == (4, 3, 160.0)
    assert (day["currency"], day["unconverted_conversions"]) == ("USD", 1)
    hour = got["series_hour"]
    assert len(hour["rows"]) == 20 * 24 + 1 and sum(r["conversions"] for r in hour["rows"]) == 3
    assert hour["goal"] == "purchase"
    link = got["series_link"]
    assert link["rate_base"] == "clicks" and sum(r["conversions"] for r in link["rows"]) == 4
    assert all(r["conversion_rate"] == 0 for r in link["rows"])  # no clicks stored: no base
    assert [(r["id"], r["count"], r["conversions"]) for r in got["links"]["rows"]] == [("L1", 0, 4)]
    assert [(r["id"], r["variation"], r["count"]) for r in got["experiments"]["rows"]] == [
        ("E1", "A", 2),
        ("E1", "B", 2),
    ]
    delays = got["delays"]  # each converted 60 s after its click: the [60 s, 10 min) bin
    assert [(r["from_s"], r["conversions"]) for r in delays["rows"]][:3] == [(0, 0), (60, 4), (600, 0)]
    assert delays["timed_conversions"] == 4
    assert [(r["id"], r["variation"], r["conversions"]) for r in got["other"]["rows"]] == [
        ("E1", "B", 2),
        ("E2", "", 1),
        ("E2", "C", 1),
    ]


def test_server_and_chdb_answer_the_views_the_same(server: ServerBackend, chdb_path: Path) -> None:
    write(server)
    fx.load_rates(server, fx.parse_rates(rates_csv(TODAY)))
    fx.set_project_currency(server, P, "USD")
    from_server = views(server)
    check(from_server)
    with ChdbBackend(str(chdb_path), f"views_{uuid.uuid4().hex}") as embedded:
        migrate(embedded)
        write(embedded)
        fx.load_rates(embedded, fx.parse_rates(rates_csv(TODAY)))
        fx.set_project_currency(embedded, P, "USD")
        assert views(embedded) == from_server
