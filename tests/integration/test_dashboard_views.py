"""The dashboard's views (issue 17) in headless Chromium against a `trackpipe run` subprocess with the
scripted market traffic (tests/dashboard_scenario.py): every filter of the Top-5, the time series, the link
page and the experiment page with its interval plot. What is drawn must be what the API answers; no request
goes to another host. Helpers and the page state read back: tests/dashboard_pages.py.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests import dashboard_pages as pages
from tests.dashboard_pages import (
    api,
    assert_ratio,
    assert_top,
    only_this_host,
    open_page,
    period_from,
    shoot,
    wait,
)
from tests.dashboard_scenario import LONG_CAMPAIGN, MARKET
from tests.integration import test_dashboard as base
from tests.integration.test_dashboard import Page, number

chromium, page, edge = base.chromium, base.page, pages.edge  # the fixtures, shared


# -- the Top-5 filters ------------------------------------------------------------------------------


async def test_every_filter_shows_the_api_report(
    edge: tuple[str, dict[str, Any]], page: Page, tmp_path: Path
) -> None:
    address, made = edge
    link_a = made["links"][0]["id"]
    await open_page(page, f"{address}/?project={MARKET}")
    state = await wait(page, f"s.state === 'ready' && s.project === '{MARKET}'", "the market report")
    assert_top(address, state, api(address, "/api/v1/reports/top-events", project=MARKET))
    assert state["rate_base"] == "Conversion rate = converters / visitors (17)"

    # the pickers list what the API lists, with their counts
    for name, kind in (("push", "pushes"), ("campaign", "campaigns"), ("link", "links")):
        rows = api(address, f"/api/v1/reports/{kind}", project=MARKET, **{"from": period_from(30)})["rows"]
        assert [o["value"] for o in state["pickers"][name]] == ["", *(r["id"] for r in rows)], name
    experiments = api(address, "/api/v1/reports/experiments", project=MARKET)["rows"]
    assert [(r["id"], r["variation"], r["count"]) for r in experiments] == [
        ("checkout", "A", 3),
        ("checkout", "B", 3),
    ]
    assert [o["value"] for o in state["pickers"]["experiment"]][1:] == [
        '["checkout","A"]',
        '["checkout","B"]',
    ]
    assert "(3 exposed)" in state["pickers"]["experiment"][1]["text"]

    cases = [
        ("push", "push-A", {"push": "push-A"}, "conversions / opens of the push message (3)"),
        ("campaign", LONG_CAMPAIGN, {"campaign": LONG_CAMPAIGN}, "converters / visitors of the campaign (6)"),
        ("link", link_a, {"link": link_a}, "conversions / clicks on the link (4)"),
        (
            "experiment",
            '["checkout","B"]',
            {"experiment": "checkout", "variation": "B"},
            "converters / visitors exposed to the variation (3)",
        ),
    ]
    for name, value, params, rate_text in cases:
        await page.choose(f"f-{name}", value)
        address_has = urllib.parse.urlencode(params)
        state = await wait(
            page,
            f"s.state === 'ready' && s.address.includes({json.dumps(address_has)})",
            f"the {name} filter",
        )
        report = api(
            address, "/api/v1/reports/top-events", project=MARKET, **params, **{"from": period_from(30)}
        )
        assert report["filter"] == params and report["rows"], report
        assert_top(address, state, report)
        assert state["rate_base"] == f"Conversion rate = {rate_text}", state["rate_base"]
        others = [n for n in ("push", "campaign", "link", "experiment") if n != name]
        assert all(not any(o["selected"] and o["value"] for o in state["pickers"][n]) for n in others)
        if name == "campaign":
            await shoot(page, tmp_path, "filters")

        # shareable: the address alone opens the same view in a new load
        shared = f"{address}/{state['address']}"
        await page.js("window.__marker = 'the page before'")
        await page.goto(shared)
        again = await wait(
            page, "s.state === 'ready' && s.marker === null && s.rate_base !== ''", "the shared view"
        )
        assert again["rate_base"] == state["rate_base"]
        assert_top(address, again, report)

    # back to every visitor
    await page.choose("f-experiment", "")
    state = await wait(page, "s.state === 'ready' && s.rate_kind === 'visitors'", "no filter")
    assert "experiment" not in state["address"]
    only_this_host(page, address)


# -- over time --------------------------------------------------------------------------------------


def assert_series(state: dict[str, Any], report: dict[str, Any]) -> None:
    rows = report["rows"]
    series = state["series"]
    for key in ("conversions", "revenue"):
        assert [i["at"] for i in series[key]["items"]] == [r["at"] for r in rows]
        assert_ratio([i["h"] for i in series[key]["items"]], [r[key] for r in rows])
    assert_ratio([i["h"] for i in series["rate"]["items"]], [r["conversion_rate"] for r in rows])
    assert len(series["table"]) == len(rows)
    for cells, row in zip(series["table"], rows, strict=True):
        assert [number(c) for c in cells[1:5]] == [
            row["conversions"],
            row["converters"],
            row["revenue"],
            row["base_count"],
        ]
        assert abs(number(cells[5]) - 100 * row["conversion_rate"]) <= 0.005 + 1e-9


async def test_the_time_series_is_the_api_series(
    edge: tuple[str, dict[str, Any]], page: Page, tmp_path: Path
) -> None:
    address, made = edge
    link_a = made["links"][0]["id"]
    goal = made["goal"]["id"]
    await open_page(page, f"{address}/?project={MARKET}&period=7")
    state = await wait(page, "s.state === 'ready' && s.series.conversions", "the series")
    report = api(
        address, "/api/v1/reports/series", project=MARKET, interval="day", **{"from": period_from(7)}
    )
    assert len(report["rows"]) == 7 and sum(r["conversions"] for r in report["rows"]) == 12
    assert_series(state, report)
    assert state["series"]["title"] == "Over time: all goals, per day"

    # the goal picked in the Top-5 table, with the link filter, per hour
    await page.choose("f-link", link_a)
    await wait(page, f"s.state === 'ready' && s.address.includes('link={link_a}')", "the link filter")
    await page.js(f"document.querySelector('#top tr[data-goal={json.dumps(goal)}] .goal-pick').click()")
    await page.choose("s-interval", "hour")
    state = await wait(
        page,
        f"s.state === 'ready' && s.address.includes('goal={goal}') && s.address.includes('interval=hour')",
        "per hour",
    )
    params = {"project": MARKET, "interval": "hour", "goal": goal, "link": link_a, "from": period_from(7)}
    report = api(address, "/api/v1/reports/series", **params)
    assert len(report["rows"]) >= 6 * 24 and report["rate_base"] == "clicks"
    assert_series(state, report)
    csv_query = urllib.parse.parse_qs(urllib.parse.urlsplit(state["series"]["csv"]).query)
    assert csv_query["format"] == ["csv"] and csv_query["goal"] == [goal] and csv_query["link"] == [link_a]
    await shoot(page, tmp_path, "series")

    # one point: today alone, per day
    await page.choose("period", "1")
    await page.choose("s-interval", "day")
    state = await wait(
        page,
        "s.state === 'ready' && s.series.conversions && s.series.conversions.items.length === 1",
        "one day",
    )
    assert_series(
        state, api(address, "/api/v1/reports/series", **{**params, "interval": "day", "from": period_from(1)})
    )

    # an empty period: every bucket drawn empty, said in words
    await page.choose("period", "custom")
    await page.choose("from", "2020-01-01")
    await page.choose("to", "2020-01-03")
    state = await wait(page, "s.state === 'ready' && s.series.empty", "the empty period")
    assert state["series"]["empty"] == "No conversions in this period"
    assert [i["h"] for i in state["series"]["conversions"]["items"]] == [0, 0, 0]
    only_this_host(page, address)


# -- the link page ----------------------------------------------------------------------------------


async def test_the_link_page_shows_the_link_analytics(
    edge: tuple[str, dict[str, Any]], page: Page, tmp_path: Path
) -> None:
    address, made = edge
    link_a, link_b = (link["id"] for link in made["links"])
    await open_page(page, f"{address}/?project={MARKET}&view=link&link_id={link_a}")
    state = await wait(page, f"s.state === 'ready' && s.link.shown === '{link_a}'", "the link page")
    analytics = api(address, "/api/v1/analytics/conversions", link_id=link_a, days=30, project=MARKET)
    stats = state["link"]["stats"]
    assert number(stats["clicks"]) == analytics["clicks"] == 4
    assert number(stats["conversions"]) == analytics["conversions"] == 3
    assert abs(number(stats["rate"]) - 100 * analytics["conversion_rate"]) <= 0.005
    assert number(stats["total"]) == analytics["total_value"] == 60.0
    assert number(stats["average"]) == analytics["average_value"] == 20.0
    for shown, seconds in (
        (stats["mean"], analytics["time_to_convert_mean_s"]),
        (stats["median"], analytics["time_to_convert_median_s"]),
    ):
        assert seconds < 60, seconds  # the postbacks follow their clicks at once
        value, unit = shown.split(" ")
        assert float(value) * {"ms": 0.001, "s": 1.0}[unit] == pytest.approx(
            seconds, abs=0.05 if unit == "s" else 0.001
        )
    assert state["link"]["goals"] == [
        [
            f"Purchase ({r['goal_id']})",
            str(r["conversions"]),
            f"{r['total_value']:.2f}",
            f"{r['average_value']:.2f}",
        ]
        for r in analytics["rows"]
    ]
    delays = api(address, "/api/v1/analytics/conversions/delays", link_id=link_a, days=30, project=MARKET)
    bins = state["link"]["bins"]
    assert [b["from"] for b in bins] == [r["from_s"] for r in delays["rows"]]
    assert [number(b["count"]) for b in bins] == [r["conversions"] for r in delays["rows"]]
    assert_ratio([b["h"] for b in bins], [r["conversions"] for r in delays["rows"]])
    assert bins[0]["label"] == "< 1 min" and bins[-1]["label"] == "≥ 7 d" and delays["timed_conversions"] == 3
    assert [o["value"] for o in state["link"]["options"]] == [link_a, link_b]
    await shoot(page, tmp_path, "link")

    await page.choose("l-link", link_b)
    state = await wait(page, f"s.state === 'ready' && s.link.shown === '{link_b}'", "link b")
    assert f"link_id={link_b}" in state["address"]
    assert (
        number(state["link"]["stats"]["conversions"]) == 1 and number(state["link"]["stats"]["total"]) == 5.0
    )
    only_this_host(page, address)


# -- the experiment page ----------------------------------------------------------------------------


def assert_experiment(state: dict[str, Any], report: dict[str, Any]) -> None:
    table = state["experiment"]["table"]
    assert [c[0] for c in table] == [r["variation_id"] for r in report["rows"]]
    for cells, row in zip(table, report["rows"], strict=True):
        assert [number(c) for c in cells[1:4]] == [row["exposures"], row["conversions"], row["converters"]]
        assert abs(number(cells[4]) - 100 * row["conversion_rate"]) <= 0.005
        assert number(cells[5]) == row["revenue"]
        if row["is_baseline"]:
            assert cells[6] == "baseline"
        else:  # "+66.67 pp [+13.33 pp, +120.00 pp]"
            shown = [float(n) for n in re.findall(r"[-+]?\d+\.\d+", cells[6])]
            expected = [100 * row["difference"], 100 * row["ci95_low"], 100 * row["ci95_high"]]
            assert shown == pytest.approx(expected, abs=0.005 + 1e-9), cells[6]
    plot = state["experiment"]
    others = [r for r in report["rows"] if not r["is_baseline"]]
    assert [r["variation"] for r in plot["rows"]] == [r["variation_id"] for r in others]
    half = plot["right"] - plot["zero"]  # the plot's half width stands for `span` (the largest bound)
    for drawn, row in zip(plot["rows"], others, strict=True):
        for x, value in (
            (drawn["low"], row["ci95_low"]),
            (drawn["high"], row["ci95_high"]),
            (drawn["point"], row["difference"]),
        ):
            assert (x - plot["zero"]) / half == pytest.approx(value / plot["span"], abs=0.01), (drawn, row)


async def test_the_experiment_page_draws_the_intervals(
    edge: tuple[str, dict[str, Any]], page: Page, tmp_path: Path
) -> None:
    address, _ = edge
    await open_page(page, f"{address}/?project={MARKET}&view=experiment")
    state = await wait(
        page, "s.state === 'ready' && s.experiment.shown === 'checkout'", "the experiment page"
    )
    report = api(address, "/api/v1/experiments/checkout/report", project=MARKET, **{"from": period_from(30)})
    assert [r["exposures"] for r in report["rows"]] == [3, 3] and report["baseline"] == "A"
    assert_experiment(state, report)
    assert "view=experiment" in state["address"] and "exp=checkout" in state["address"]

    # per goal: 'order' was made by variation B only
    await page.choose("e-goal", "order")
    state = await wait(page, "s.state === 'ready' && s.address.includes('exp_goal=order')", "the order goal")
    report = api(
        address,
        "/api/v1/experiments/checkout/report",
        project=MARKET,
        goal="order",
        **{"from": period_from(30)},
    )
    assert [r["converters"] for r in report["rows"]] == [0, 2] and report["rows"][1]["ci95_low"] is not None
    assert_experiment(state, report)
    await shoot(page, tmp_path, "experiment")
    only_this_host(page, address)
