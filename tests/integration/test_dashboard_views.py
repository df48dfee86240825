"""The dashboard's views (issue 17) in headless Chromium against a `trackpipe run` subprocess with the
scripted market traffic (tests/dashboard_scenario.py): every filter of the Top-5, the time series, the link
page, the experiment page with its interval plot, goal and link creation through the page. What is drawn
must be what the API answers; no request goes to another host. Set ``TRACKPIPE_DASHBOARD_SCREENSHOTS=docs``
to refresh the committed screenshots (docs/dashboard-*.png; always written to the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_scenario import LONG_CAMPAIGN, MARKET, send_market, wait_json
from tests.integration import test_dashboard as base
from tests.integration.test_dashboard import ADMIN, ADMIN_KEY, WAIT, Page, assert_shows, number
from tests.scenario import Proc, free_port, http

chromium = base.chromium  # the fixtures, shared
page = base.page
MARKET_KEY = "dashboard-market-key-" + "m" * 24

#: The page state of test_dashboard, plus the views' own (pickers, series, link, experiment, management).
VIEW_STATE = (
    """(() => {
  const s = __PAGE_STATE__;
  const q = (sel) => document.querySelector(sel);
  const all = (sel) => [...document.querySelectorAll(sel)];
  const text = (el) => el ? el.textContent : null;
  const num = (el, name) => Number(el.getAttribute(name));
  const options = (id) => [...document.getElementById(id).options].map(
    (o) => ({value: o.value, text: o.textContent, selected: o.selected}));
  const panel = (key) => {
    const g = q(`#series-chart .panel-${key}`);
    if (!g) return null;
    const bottom = num(g.querySelector(".axis"), "y1");
    const items = [...g.querySelectorAll("rect, circle")].map((el) => ({at: el.dataset.at,
      h: el.tagName === "rect" ? num(el, "height") : bottom - num(el, "cy")}));
    return {label: text(g.querySelector(".panel-label")), items};
  };
  const cells = (sel) => all(sel + " tbody tr").map((tr) => [...tr.cells].map((td) => td.textContent));
  const zero = q("#e-plot .zero");
  return Object.assign(s || {}, {
    view: document.body.dataset.view || null,
    rate_base: text(q("#rate-base")),
    rate_kind: document.body.dataset.rateBase || null,
    pickers: Object.fromEntries(
      ["push", "campaign", "link", "experiment"].map((n) => [n, options("f-" + n)])),
    series: {title: text(q("#series-title")), csv: q("#series-csv").getAttribute("href"),
      conversions: panel("conversions"), revenue: panel("revenue"), rate: panel("conversion_rate"),
      empty: text(q("#series-chart .empty")), table: cells("#series-table"), goal: options("s-goal")},
    link: {options: options("l-link"), shown: document.body.dataset.link || null,
      stats: Object.fromEntries(["clicks", "conversions", "rate", "total", "average", "mean", "median"].map(
        (n) => [n, text(document.getElementById("l-" + n))])),
      goals: cells("#l-goals"),
      bins: all("#l-hist .h-row").map((g) => ({
        from: Number(g.dataset.from), label: text(g.querySelector(".h-label")),
        count: text(g.querySelector(".h-count")), h: num(g.querySelector(".h-bar"), "height")}))},
    experiment: {options: options("e-exp"), goals: options("e-goal"),
      shown: document.body.dataset.experiment || null,
      table: cells("#e-table"),
      zero: zero ? num(zero, "x1") : null, right: zero ? num(q("#e-plot .axis"), "x2") : null,
      span: Number(q("#e-plot").dataset.span || 0),
      rows: all("#e-plot .ci-row").map((g) => ({variation: g.dataset.variation,
        low: g.querySelector(".ci-line") ? num(g.querySelector(".ci-line"), "x1") : null,
        high: g.querySelector(".ci-line") ? num(g.querySelector(".ci-line"), "x2") : null,
        point: g.querySelector(".ci-point") ? num(g.querySelector(".ci-point"), "cx") : null}))},
    manage: {refused: !q("#m-refused").hidden, note: text(q("#m-note")),
      goals: all("#m-goals tbody tr[data-goal]").map((tr) => ({
        id: tr.dataset.goal, text: tr.cells[0].textContent,
        kind: tr.cells[1].textContent, postback: tr.querySelector(".copy-postback").value,
        pixel: tr.querySelector(".copy-pixel").value})),
      links: all("#m-links tbody tr[data-link]").map((tr) => ({
        id: tr.dataset.link, text: tr.cells[0].textContent,
        tracking: tr.querySelector(".copy-tracking").value, postback: tr.querySelector(".copy-pb").value}))},
    goal_names: all("#top tbody tr").map((tr) => text(tr.querySelector(".goal-name"))),
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    unlabelled: all("select, input:not([type=hidden]), button, a[href]").filter((el) =>
      !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim()).map(
      (el) => el.outerHTML.slice(0, 80)),
  });
})()"""
).replace("__PAGE_STATE__", base.PAGE_STATE)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """`trackpipe run` with the market traffic; yields the address and what the scenario made."""
    tmp = tmp_path_factory.mktemp("dashboard-views")
    port = free_port()
    address = f"http://127.0.0.1:{port}"
    env = {"TRACKPIPE_ADMIN_KEY": ADMIN_KEY, "TRACKPIPE_READ_KEYS": f"{MARKET}={MARKET_KEY}"}
    proc = Proc(["run", "--port", str(port), "--data-dir", str(tmp / "data")], env, tmp / "run.log")
    try:
        proc.wait_healthy(address, timeout=WAIT)
        made = send_market(address, ADMIN)
        done = lambda a: sum(r["conversions"] for r in a["rows"]) == 12  # noqa: E731
        wait_json(address, f"/api/v1/reports/top-events?project={MARKET}", ADMIN, done, WAIT)
        exposed = lambda a: sum(r["count"] for r in a["rows"]) == 6  # noqa: E731
        wait_json(address, f"/api/v1/reports/experiments?project={MARKET}", ADMIN, exposed, WAIT)
        yield address, made
    finally:
        assert proc.stop() == 0, proc.tail()


def api(address: str, path: str, **params: Any) -> Any:
    status, body = http("GET", f"{address}{path}?{urllib.parse.urlencode(params)}", None, ADMIN)
    assert status == 200, (path, params, body)
    return body


async def wait(page: Page, predicate: str, what: str) -> dict[str, Any]:
    return await page.wait_for(predicate, what, VIEW_STATE)


async def shoot(page: Page, tmp_path: Path, name: str) -> None:
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    png = base64.b64decode(shot["data"])
    (tmp_path / f"dashboard-{name}.png").write_bytes(png)
    target = os.environ.get("TRACKPIPE_DASHBOARD_SCREENSHOTS")
    if target:
        await asyncio.to_thread(Path(target, f"dashboard-{name}.png").write_bytes, png)


def only_this_host(page: Page, address: str) -> None:
    hosts = {urllib.parse.urlsplit(u).netloc for u in page.requests if not u.startswith("data:")}
    assert hosts == {urllib.parse.urlsplit(address).netloc}, page.requests
    assert page.problems == []


async def open_page(page: Page, url: str, key: str = ADMIN_KEY) -> None:
    await page.send("Network.enable")
    await page.goto(url)
    await page.type_key(key)


def assert_top(address: str, state: dict[str, Any], report: dict[str, Any]) -> None:
    """The Top-5 as test_dashboard checks it, each configured goal's name shown before its id."""
    goals = api(address, "/api/v1/conversions/goals", project=MARKET)["goals"]
    names = {g["id"]: g["name"] for g in goals}
    assert state["goal_names"] == [names.get(r["goal_id"]) for r in report["rows"]]
    assert any(state["goal_names"]) or report["filter"], "the goal made by the scenario has a name"
    for cells, name in zip(state["table"], state["goal_names"], strict=True):
        if name is not None:
            assert cells[1].startswith(name + " ")
            cells[1] = cells[1].removeprefix(name + " ")
    assert_shows(state, report)


def assert_ratio(drawn: list[float], values: list[float]) -> None:
    """Heights drawn in proportion to the values (the largest drawn full)."""
    assert len(drawn) == len(values)
    most_drawn, most = max(drawn, default=0), max(values, default=0)
    for h, v in zip(drawn, values, strict=True):
        expected = v / most if most else 0.0
        assert (h / most_drawn if most_drawn else 0.0) == pytest.approx(expected, abs=0.01), (drawn, values)


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


def period_from(days: int) -> str:
    """The start of the page's "last ``days`` days" (whole UTC days, today included)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days - 1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


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


# -- goals and links management ---------------------------------------------------------------------


async def fill(page: Page, field: str, text: str) -> None:
    """Type into a field as a user would (focus, clear, insert the text)."""
    await page.js(
        f"(() => {{ const el = document.getElementById({json.dumps(field)}); el.focus(); el.select(); }})()"
    )
    await page.send("Input.insertText", text=text)


async def test_goals_and_links_are_made_through_the_page(
    edge: tuple[str, dict[str, Any]], page: Page, tmp_path: Path
) -> None:
    address, made = edge
    name = "Newsletter <b>signup</b> " + "n" * 80
    await open_page(page, f"{address}/?project={MARKET}&view=manage&refresh=3600")  # no refresh mid-test
    state = await wait(page, "s.state === 'ready' && s.manage.goals.length === 1", "the goals")
    assert state["manage"]["goals"][0]["id"] == made["goal"]["id"]

    # a goal, created through the form
    await fill(page, "mg-name", name)
    await page.choose("mg-type", "signup")
    await fill(page, "mg-value", "2.5")
    await fill(page, "mg-currency", "EUR")
    await page.js("document.getElementById('mg-save').click()")
    state = await wait(page, "s.state === 'ready' && s.manage.goals.length === 2", "the new goal")
    goals = api(address, "/api/v1/conversions/goals", project=MARKET)["goals"]
    created = next(g for g in goals if g["name"] == name)
    assert (created["goal_type"], created["value"], created["currency"]) == ("signup", 2.5, "EUR")
    shown = next(g for g in state["manage"]["goals"] if g["id"] == created["id"])
    assert shown["text"] == f"{name} {created['id']}" and shown["postback"] == created["track_url"]
    assert (
        shown["pixel"].startswith(f'<img src="{created["track_url"]}?value=')
        and "currency=EUR" in shown["pixel"]
    )
    assert state["manage"]["note"] == "Created." and state["injected"] == 0

    # edited: its value
    await page.js(
        f"document.querySelector('#m-goals tr[data-goal={json.dumps(created['id'])}] .edit-button').click()"
    )
    await fill(page, "mg-value", "4")
    await page.js("document.getElementById('mg-save').click()")
    await wait(
        page,
        "s.state === 'ready' && s.manage.note === 'Saved.'"
        " && s.manage.goals.some((g) => g.kind.includes('4 EUR'))",
        "the edit",
    )
    assert api(address, f"/api/v1/conversions/goals/{created['id']}")["value"] == 4.0

    # a link to the new goal, then its campaign changed
    await fill(page, "ml-url", "https://shop.example/newsletter")
    await fill(page, "ml-campaign", "autumn")
    await page.choose("ml-goal", created["id"])
    await page.js("document.getElementById('ml-save').click()")
    state = await wait(page, "s.state === 'ready' && s.manage.links.length === 3", "the new link")
    links = api(address, "/api/v1/links", project=MARKET)["links"]
    link = next(lk for lk in links if lk["url"] == "https://shop.example/newsletter")
    assert (link["campaign"], link["goal"]) == ("autumn", created["id"])
    row = next(lk for lk in state["manage"]["links"] if lk["id"] == link["id"])
    assert row["tracking"] == link["tracking_url"]
    assert row["postback"] == f"{address}/pb/?hit={{click_id}}&tx={{order_id}}&rev={{value}}"
    # "Copy": the tracking URL lands on the clipboard
    origin = urllib.parse.urlsplit(address)
    await page.send(
        "Browser.grantPermissions",
        origin=f"{origin.scheme}://{origin.netloc}",
        permissions=["clipboardReadWrite", "clipboardSanitizedWrite"],
    )
    copy = f"#m-links tr[data-link={json.dumps(link['id'])}] .copy-tracking + .copy-button"
    await page.js(f"document.querySelector({json.dumps(copy)}).click()")
    await wait(page, f"document.querySelector({json.dumps(copy)}).textContent === 'Copied'", "the copy")
    assert await page.js("navigator.clipboard.readText()") == link["tracking_url"]
    await page.js(
        f"document.querySelector('#m-links tr[data-link={json.dumps(link['id'])}] .edit-button').click()"
    )
    await fill(page, "ml-campaign", "winter")
    await page.js("document.getElementById('ml-save').click()")
    await wait(
        page,
        "s.state === 'ready' && s.manage.links.some((l) => l.text.includes('campaign winter'))",
        "the link edit",
    )
    assert api(address, f"/api/v1/links/{link['id']}")["campaign"] == "winter"
    await shoot(page, tmp_path, "manage")

    # the market's read key: nothing to manage
    await page.js("document.getElementById('forget-key').click()")
    await page.type_key(MARKET_KEY)
    state = await wait(page, f"s.state === 'ready' && s.stored_key === '{MARKET_KEY}'", "the read key")
    assert state["manage"]["refused"] and state["manage"]["goals"] == []
    page.problems[:] = [p for p in page.problems if "status of 403" not in p]  # the refusal, as asked
    only_this_host(page, address)


# -- a phone ----------------------------------------------------------------------------------------


async def test_every_view_fits_a_phone(edge: tuple[str, dict[str, Any]], page: Page, tmp_path: Path) -> None:
    address, _ = edge
    await page.send(
        "Emulation.setDeviceMetricsOverride", width=360, height=740, deviceScaleFactor=1, mobile=True
    )
    query = urllib.parse.urlencode({"project": MARKET, "campaign": LONG_CAMPAIGN})
    await open_page(page, f"{address}/?{query}")
    state = await wait(
        page, "s.state === 'ready' && s.rate_kind === 'campaign_visitors'", "the campaign view"
    )
    assert state["overflow"] <= 0, state["overflow"]
    await shoot(page, tmp_path, "phone")
    for view, ready in (
        ("link", "s.link.shown"),
        ("experiment", "s.experiment.shown"),
        ("manage", "s.manage.goals.length"),
    ):
        await page.js(f"document.getElementById('tab-{view}').click()")
        state = await wait(page, f"s.state === 'ready' && s.view === '{view}' && {ready}", f"the {view} view")
        assert state["overflow"] <= 0, (view, state["overflow"])
    only_this_host(page, address)


# -- the API the views read -------------------------------------------------------------------------


def test_the_views_api_answers_csv_and_refuses_bad_queries(edge: tuple[str, dict[str, Any]]) -> None:
    address, made = edge
    link_a = made["links"][0]["id"]
    query = {"project": MARKET, "interval": "hour", "link": link_a, "from": period_from(2)}
    as_json = api(address, "/api/v1/reports/series", **query)["rows"]
    status, ctype, text = base.get_raw(
        f"{address}/api/v1/reports/series?{urllib.parse.urlencode({**query, 'format': 'csv'})}", ADMIN
    )
    assert status == 200 and ctype.startswith("text/csv")
    # the series adds up to the Top-5 (4 goals: all of them) over the same period and filter
    top = api(address, "/api/v1/reports/top-events", project=MARKET, link=link_a, **{"from": period_from(2)})
    assert sum(r["conversions"] for r in as_json) == sum(r["conversions"] for r in top["rows"]) == 3
    assert sum(r["revenue"] for r in as_json) == sum(r["revenue"] for r in top["rows"]) == 60.0
    assert sum(r["base_count"] for r in as_json) == top["rate_base_count"] == 4
    lines = text.splitlines()
    assert lines[0] == "at,conversions,converters,revenue,base_count,conversion_rate"
    assert len(lines) == len(as_json) + 1 == 49
    for kind in ("pushes", "campaigns", "links", "experiments"):
        status, ctype, text = base.get_raw(
            f"{address}/api/v1/reports/{kind}?project={MARKET}&format=csv", ADMIN
        )
        assert status == 200 and text.splitlines()[0] == "id,variation,count,conversions", (kind, text)

    bad = [
        "/api/v1/reports/series?project=market&interval=hour&from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z",
        "/api/v1/reports/series?project=market&interval=week",
        "/api/v1/reports/series?project=market&experiment=checkout",
        "/api/v1/reports/series?project=market&push=a&link=b",
        "/api/v1/reports/series?project=market&limit=5",
        "/api/v1/reports/links?project=market&limit=0",
        "/api/v1/reports/pushes?project=market&from=yesterday",
        "/api/v1/analytics/conversions/delays?link_id=x&days=0",
        "/api/v1/analytics/conversions/delays?days=3",
    ]
    for path in bad:
        status, body = http("GET", address + path, None, ADMIN)
        assert status == 400 and body["error"]["code"] == "invalid_query", (path, body)

    # a read key reads its own project only; the delays of a link need the project then
    reader = {"Authorization": f"Bearer {MARKET_KEY}"}
    assert http("GET", f"{address}/api/v1/reports/links?project={MARKET}", None, reader)[0] == 200
    for path in (
        "/api/v1/reports/links?project=other",
        f"/api/v1/analytics/conversions/delays?link_id={link_a}",
    ):
        status, body = http("GET", address + path, None, reader)
        assert status == 403 and body["error"]["code"] == "forbidden", (path, body)
    status, body = http("GET", f"{address}/api/v1/reports/series?project={MARKET}")
    assert status == 401, body


async def test_empty_views_say_so_and_every_control_has_a_name(
    edge: tuple[str, dict[str, Any]], page: Page
) -> None:
    address, _ = edge
    empty = "period=custom&from=2020-01-01&to=2020-01-02"
    await open_page(page, f"{address}/?project={MARKET}&view=link&{empty}")
    state = await wait(page, "s.state === 'ready' && s.view === 'link'", "the empty link page")
    assert state["link"]["goals"] == [["No link clicked in this period"]] and state["link"]["bins"] == []
    assert state["link"]["options"] == [
        {"value": "", "text": "(no link clicked in this period)", "selected": True}
    ]
    assert state["unlabelled"] == [], state["unlabelled"]
    await page.js("document.getElementById('tab-experiment').click()")
    state = await wait(page, "s.state === 'ready' && s.view === 'experiment'", "the empty experiment page")
    assert state["experiment"]["table"] == [["No exposures in this period"]]
    await page.js("document.getElementById('tab-top').click()")
    state = await wait(page, "s.state === 'ready' && s.view === 'top' && s.series.empty", "the empty Top-5")
    assert state["table"] == [["No conversions in this period"]] and state["series"]["table"][0][1:] == [
        "0",
        "0",
        "0.00",
        "0",
        "0.00 %",
    ]
    assert all(o["value"] == "" for o in state["pickers"]["link"]) and state["unlabelled"] == []
    # the views are buttons: reachable and pressed from the keyboard
    tabs = await page.js(
        "[...document.querySelectorAll('#views button')].map((b) => [b.tabIndex, b.textContent])"
    )
    assert [t[0] for t in tabs] == [0, 0, 0, 0]
    only_this_host(page, address)
