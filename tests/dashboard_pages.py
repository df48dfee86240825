"""Helpers of the dashboard views' Chromium tests (tests/integration/test_dashboard_views.py and
test_dashboard_manage.py): the market edge, the page state they read back (VIEW_STATE), and the checks
that what is drawn is what the API answers. Set ``TRACKPIPE_DASHBOARD_SCREENSHOTS=docs`` to refresh the
committed screenshots (docs/dashboard-*.png; always written to the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_scenario import MARKET, send_market, wait_json
from tests.integration import test_dashboard as base
from tests.integration.test_dashboard import ADMIN, ADMIN_KEY, WAIT, Page, assert_shows
from tests.scenario import Proc, free_port, http

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


def period_from(days: int) -> str:
    """The start of the page's "last ``days`` days" (whole UTC days, today included)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days - 1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def fill(page: Page, field: str, text: str) -> None:
    """Type into a field as a user would (focus, clear, insert the text)."""
    await page.js(
        f"(() => {{ const el = document.getElementById({json.dumps(field)}); el.focus(); el.select(); }})()"
    )
    await page.send("Input.insertText", text=text)
