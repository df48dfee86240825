"""The dashboard (GET /) in headless Chromium against a `trackpipe run` subprocess, plus the API it reads
(/api/v1/projects, ?format=csv). The edge has an admin key and a read key for the shop project: the page
asks for a key, and each test types one in.

Chromium (Debian ``chromium``) is driven over the Chrome DevTools protocol with aiohttp's websocket
client. The page is checked against the API: every number the chart and the table show must be the
number /api/v1/reports/top-events returns. Set ``TRACKPIPE_DASHBOARD_SCREENSHOT=docs/dashboard.png`` to
refresh the committed screenshot (it is always written to the test's tmp dir). The browser is
``chromium`` from PATH, or ``TRACKPIPE_TEST_CHROMIUM=/path/to/chrome``.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.test_outbound_admin import GoneReceiver
from tests.integration.test_outbound_embedded import wait_for
from tests.scenario import EXPECTED_ROWS, Proc, free_port, http, send_scenario, wait_report

SHOP = "shop-demo"
ADMIN_KEY = "dashboard-admin-key-" + "a" * 24
SHOP_KEY = "dashboard-shop-key-" + "s" * 24
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
XSS_PROJECT = '<b id="injected">p</b>'
XSS_GOAL = '<img src=x onerror="window.__pwned=1">'
WAIT = 90  # seconds: generous, the machine is shared


def shop_rows() -> list[dict[str, Any]]:
    """What the shop traffic sent by the fixture must report (12 visitors; 6 goals, Top-5 shown)."""
    rows = [  # goal, conversions, converters, rate, revenue
        ("signup", 9, 9, 0.75, 0.0),
        ("add-to-cart", 7, 7, 0.583333, 0.0),
        ("purchase", 6, 5, 0.416667, 209.95),
        ("newsletter", 4, 4, 0.333333, 0.0),
        ("download", 2, 2, 0.166667, 0.0),
    ]
    names = ("goal_id", "conversions", "converters", "conversion_rate", "revenue")
    return [dict(zip(names, row, strict=True)) for row in rows]


def track(base: str, project: str, visitor: str, events: list[dict[str, Any]]) -> None:
    body = {"cid": "1", "pid": project, "vid": visitor, "ev": events}
    status, answer = http(
        "POST", base + "/track", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    assert status == 200, answer


def send_shop(base: str) -> None:
    goals = {"signup": 9, "add-to-cart": 7, "newsletter": 4, "download": 2, "contact": 1}
    for v in range(12):
        events: list[dict[str, Any]] = [{"evt": "viewExp", "exps": ["home"], "vars": ["A" if v % 2 else "B"]}]
        events += [{"evt": "hitGoal", "goals": [g]} for g, n in goals.items() if v < n]
        if v < 5:
            events.append(
                {"evt": "tr", "goals": ["purchase"], "r": f"{19.99 + 10 * v:.2f}", "tid": f"order-{v}"}
            )
        if v == 0:  # a second order: 6 purchases by 5 converters
            events.append({"evt": "tr", "goals": ["purchase"], "r": "10.00", "tid": "order-again"})
        track(base, SHOP, f"shop-visitor-{v}", events)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`trackpipe run` with the reference scenario (project 12345), an XSS probe and the shop project."""
    tmp = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"TRACKPIPE_ADMIN_KEY": ADMIN_KEY, "TRACKPIPE_READ_KEYS": f"{SHOP}={SHOP_KEY}"}
    proc = Proc(["run", "--port", str(port), "--data-dir", str(tmp / "data")], env, tmp / "run.log")
    try:
        proc.wait_healthy(base, timeout=WAIT)
        send_scenario(base)
        track(base, XSS_PROJECT, "xss-visitor", [{"evt": "hitGoal", "goals": [XSS_GOAL]}])
        send_shop(base)  # last: the most recently active project
        wait_report(base, "12345", EXPECTED_ROWS, timeout=WAIT, headers=ADMIN)
        wait_report(base, SHOP, shop_rows(), timeout=WAIT, headers=ADMIN)
        yield base
    finally:
        assert proc.stop() == 0, proc.tail()


def get_raw(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"User-Agent": "trackpipe-tests", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def api_report(base: str, project: str) -> dict[str, Any]:
    status, body = http(
        "GET",
        f"{base}/api/v1/reports/top-events?" + urllib.parse.urlencode({"project": project}),
        None,
        ADMIN,
    )
    assert status == 200, body
    return body  # type: ignore[no-any-return]


# -- the API the page reads -------------------------------------------------------------------------


def test_csv_export_has_the_json_rows(edge: str) -> None:
    query = "/api/v1/reports/top-events?project=" + SHOP
    status, ctype, text = get_raw(edge + query + "&format=csv", ADMIN)
    assert status == 200 and ctype.startswith("text/csv"), (status, ctype, text)
    assert text.splitlines()[0] == "goal_id,conversions,converters,conversion_rate,revenue"
    as_json = api_report(edge, SHOP)["rows"]
    assert as_json == shop_rows()
    assert list(csv.DictReader(io.StringIO(text))) == [{k: str(v) for k, v in r.items()} for r in as_json]
    assert http("GET", edge + query + "&format=json", None, ADMIN)[1]["rows"] == as_json

    status, body = http("GET", edge + query + "&format=xml", None, ADMIN)
    assert status == 400 and body["error"]["code"] == "invalid_query", body
    assert "json, csv" in body["error"]["message"]
    assert body["error"]["details"] == [{"field": "format", "allowed": ["json", "csv"]}]


def test_projects_most_recent_first(edge: str) -> None:
    track(edge, "late-project", "late-visitor", [{"evt": "hitGoal", "goals": ["1"]}])
    deadline = time.monotonic() + WAIT
    while True:
        status, body = http("GET", edge + "/api/v1/projects", None, ADMIN)
        assert status == 200, body
        projects = [r["project"] for r in body["rows"]]
        if (projects and projects[0] == "late-project") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert projects[0] == "late-project", body
    assert set(projects) == {"late-project", SHOP, XSS_PROJECT, "12345"}
    stamps = [r["last_event_at"] for r in body["rows"]]
    assert stamps == sorted(stamps, reverse=True)

    limited = http("GET", edge + "/api/v1/projects?limit=2", None, ADMIN)[1]["rows"]
    assert [r["project"] for r in limited] == projects[:2]
    status, ctype, text = get_raw(edge + "/api/v1/projects?format=csv", ADMIN)
    assert status == 200 and ctype.startswith("text/csv")
    assert [r["project"] for r in csv.DictReader(io.StringIO(text))] == projects
    for bad in ("limit=0", "limit=x", "project=1", "format=html"):
        status, body = http("GET", edge + "/api/v1/projects?" + bad, None, ADMIN)
        assert status == 400 and body["error"]["code"] == "invalid_query", (bad, body)


def test_page_and_static_files_are_served_with_a_strict_policy(edge: str) -> None:
    status, ctype, text = get_raw(edge + "/")
    assert status == 200 and ctype.startswith("text/html") and "/static/dashboard.js" in text
    with urllib.request.urlopen(edge + "/static/dashboard.js", timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/javascript")
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert "innerHTML" not in resp.read().decode()
    status, body = http("GET", edge + "/static/..%2fapp.py")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_the_api_the_page_reads_needs_a_key(edge: str) -> None:
    for path in ("/api/v1/projects", f"/api/v1/reports/top-events?project={SHOP}"):
        status, body = http("GET", edge + path)
        assert status == 401 and body["error"]["code"] == "unauthorized", (path, body)
    status, body = http("GET", edge + "/api/v1/projects", None, {"Authorization": f"Bearer {SHOP_KEY}"})
    assert status == 200 and [r["project"] for r in body["rows"]] == [SHOP]


# -- headless Chromium over the DevTools protocol ----------------------------------------------------


class Page:
    """One browser tab driven over the Chrome DevTools protocol (websocket, JSON messages)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.problems: list[str] = []  # uncaught exceptions and console errors
        self.requests: list[str] = []  # URLs the page asked for (after Network.enable)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data:
                future = self.pending.pop(data["id"], None)
                if future and not future.done():
                    future.set_result(data)
            elif data.get("method") == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])
            elif data.get("method") == "Runtime.exceptionThrown":
                self.problems.append(json.dumps(data["params"]["exceptionDetails"])[:500])
            elif data.get("method") == "Runtime.consoleAPICalled" and data["params"]["type"] == "error":
                self.problems.append(json.dumps(data["params"]["args"])[:500])
            elif data.get("method") == "Log.entryAdded" and data["params"]["entry"]["level"] == "error":
                entry = data["params"]["entry"]
                if entry.get("source") == "network" and "status of 401" in entry.get("text", ""):
                    continue  # the API asking for a key: how the page learns to show the key prompt
                self.problems.append(json.dumps(entry)[:500])

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        answer = await asyncio.wait_for(future, WAIT)
        assert "error" not in answer, (method, answer)
        return answer["result"]  # type: ignore[no-any-return]

    async def js(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def choose(self, element_id: str, value: str) -> None:
        """Set a form control's value as a user would: the page sees a 'change' event."""
        await self.js(
            f"(() => {{ const el = document.getElementById({json.dumps(element_id)}); "
            f"el.value = {json.dumps(value)}; el.dispatchEvent(new Event('change')); }})()"
        )

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def type_key(self, key: str) -> None:
        """Wait for the key prompt, type ``key`` into it as a user would and submit it."""
        await self.wait_for("s.state === 'locked' && s.key_prompt", "the key prompt")
        await self.js("document.getElementById('key').focus()")
        await self.send("Input.insertText", text=key)
        await self.js("document.getElementById('use-key').click()")

    async def wait_for(self, predicate: str, what: str, page_state: str = "") -> dict[str, Any]:
        """Poll the page until ``predicate`` (JS, over ``s`` = the page state: ``page_state``, by default
        PAGE_STATE) holds; return the state."""
        deadline = time.monotonic() + WAIT
        state: Any = None
        page_state = page_state or PAGE_STATE
        expression = f"(() => {{ const s = {page_state}; return {{ok: Boolean({predicate}), s}}; }})()"
        while time.monotonic() < deadline:
            # lenient while the page is still loading (no document yet, context replaced): poll again
            msg_id = next(self.ids)
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.pending[msg_id] = future
            params = {"expression": expression, "returnByValue": True}
            await self.ws.send_json({"id": msg_id, "method": "Runtime.evaluate", "params": params})
            answer = await asyncio.wait_for(future, WAIT)
            result = answer.get("result", {})
            if "exceptionDetails" not in result and "error" not in answer:
                state = result["result"].get("value")
                if state and state["ok"]:
                    return state["s"]  # type: ignore[no-any-return]
            else:
                state = answer
            await asyncio.sleep(0.25)
        raise AssertionError(f"page never showed {what}; last state: {state}; problems: {self.problems}")


#: Everything the page shows, as data: the chart's bars and labels, the table cells, the pickers.
PAGE_STATE = """(() => {
  const q = (sel) => document.querySelector(sel);
  const width = (el) => el ? el.getBoundingClientRect().width : null;
  const text = (el) => el ? el.textContent : null;
  if (!q("#chart") || !q("#project")) return {state: null};
  return {
    state: document.body.dataset.state || null,
    renders: Number(document.body.dataset.renders || 0),
    project: document.body.dataset.project || null,
    address: window.location.search,
    marker: window.__marker || null,
    pwned: window.__pwned || null,
    injected: document.querySelectorAll("#injected, img").length,
    status: text(q("#status")),
    key_prompt: !q("#key-form").hidden,
    stored_key: window.sessionStorage.getItem("trackpipe.key"),
    visitors: text(q("#visitors")),
    picker: [...q("#project").options].map(
      (o) => ({text: o.textContent, value: o.value, selected: o.selected})),
    csv: q("#csv").getAttribute("href"),
    chart: [...document.querySelectorAll("#chart g.bar-row")].map((g) => ({
      goal: g.querySelector(".label-goal title").textContent,
      conv_text: text(g.querySelector(".label-conv")),
      conv_width: width(g.querySelector(".bar-conv")),
      rate_text: text(g.querySelector(".label-rate")),
      rate_width: width(g.querySelector(".bar-rate")),
      track_width: width(g.querySelector(".track")),
    })),
    chart_empty: text(q("#chart .empty")),
    table: [...document.querySelectorAll("#top tbody tr")].map(
      (tr) => [...tr.cells].map((td) => td.textContent)),
    health: q("#health") && !q("#health").hidden ? {
      dead: text(q("#health-dead")),
      ok: q("#health-ok").hidden ? null : text(q("#health-ok")),
      headers: [...document.querySelectorAll("#endpoints th")].map((th) => th.textContent),
      rows: [...document.querySelectorAll("#endpoints tbody tr")].filter((tr) => !q("#endpoints").hidden).map(
        (tr) => ({key: tr.dataset.key, cells: [...tr.cells].map((td) => td.textContent)})),
      overflow: q("#health").scrollWidth - q("#health").clientWidth,
      right: q("#health").getBoundingClientRect().right,
    } : null,
    alerts: q("#alerts") && !q("#alerts").hidden ? {
      empty: q("#alerts-empty").hidden ? null : text(q("#alerts-empty")),
      headers: [...document.querySelectorAll("#rules th")].map((th) => th.textContent),
      rows: [...document.querySelectorAll("#rules tbody tr")].filter(() => !q("#rules").hidden).map((tr) => ({
        id: tr.dataset.rule,
        state: tr.dataset.state,
        state_class: tr.cells[1].className,
        cells: [...tr.cells].map((td) => td.textContent),
        transitions: [...tr.querySelectorAll(".transitions li")].map((li) => li.textContent),
      })),
      overflow: q("#alerts").scrollWidth - q("#alerts").clientWidth,
      right: q("#alerts").getBoundingClientRect().right,
    } : null,
  };
})()"""


def number(text: str) -> float:
    return float(text.replace(",", "").replace("%", "").strip())


def assert_shows(state: dict[str, Any], report: dict[str, Any]) -> None:
    """The chart and the table show exactly the report's rows and numbers (to the digits displayed)."""
    rows = report["rows"]
    assert state["project"] == report["project"]
    assert number(state["visitors"]) == report["visitors"]
    assert [bar["goal"] for bar in state["chart"]] == [r["goal_id"] for r in rows], state["chart"]
    most = max(r["conversions"] for r in rows)
    widest = max(bar["conv_width"] for bar in state["chart"])
    for bar, row in zip(state["chart"], rows, strict=True):
        assert number(bar["conv_text"]) == row["conversions"]
        assert abs(number(bar["rate_text"]) - 100 * row["conversion_rate"]) <= 0.005 + 1e-9, (bar, row)
        assert bar["conv_width"] / widest == pytest.approx(row["conversions"] / most, abs=0.01)
        assert bar["rate_width"] / bar["track_width"] == pytest.approx(row["conversion_rate"], abs=0.01)
    assert len(state["table"]) == len(rows)
    for i, (cells, row) in enumerate(zip(state["table"], rows, strict=True)):
        rank, goal, conversions, converters, rate, revenue = cells
        assert (rank, goal) == (str(i + 1), row["goal_id"])
        assert number(conversions) == row["conversions"] and number(converters) == row["converters"]
        assert abs(number(rate) - 100 * row["conversion_rate"]) <= 0.005 + 1e-9, (cells, row)
        assert abs(number(revenue) - row["revenue"]) <= 0.005 + 1e-9, (cells, row)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A headless Chromium with the DevTools protocol on a free loopback port; yields its http address."""
    binary = os.environ.get("TRACKPIPE_TEST_CHROMIUM") or shutil.which("chromium")
    assert binary, "chromium not found: apt-get install -y chromium chromium-driver (see .ci/run)"
    tmp = tmp_path_factory.mktemp("chromium")
    profile = tmp / "profile"
    log = open(tmp / "chromium.log", "wb")
    proc = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + WAIT
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, (tmp / "chromium.log").read_text()
            assert time.monotonic() < deadline, "chromium wrote no DevToolsActivePort"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{int(port_file.read_text().split()[0])}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
async def page(chromium: str) -> AsyncIterator[Page]:
    """A fresh tab, 1000x800 CSS pixels, with exceptions and console errors recorded."""
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{chromium}/json/new?about:blank") as resp:
            target = await resp.json(content_type=None)
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            tab = Page(ws)
            for domain in ("Page", "Runtime", "Log"):
                await tab.send(f"{domain}.enable")
            await tab.send(
                "Emulation.setDeviceMetricsOverride",
                width=1000,
                height=800,
                deviceScaleFactor=1,
                mobile=False,
            )
            try:
                yield tab
            finally:
                tab.reader.cancel()
        async with session.get(f"{chromium}/json/close/{target['id']}") as resp:
            await resp.read()


async def test_chart_and_table_show_the_api_numbers(edge: str, page: Page, tmp_path: Path) -> None:
    report = api_report(edge, SHOP)
    assert report["rows"] == shop_rows()  # 'contact' (6th goal) is not in the Top-5
    await page.goto(f"{edge}/?project={SHOP}")
    await page.type_key(ADMIN_KEY)
    state = await page.wait_for(f"s.state === 'ready' && s.project === '{SHOP}'", "the shop report")
    assert_shows(state, report)
    assert "contact" not in json.dumps(state["chart"]) + json.dumps(state["table"])
    assert [o["value"] for o in state["picker"] if o["selected"]] == [SHOP]
    csv_url = urllib.parse.urlsplit(state["csv"])
    assert csv_url.path == "/api/v1/reports/top-events"
    assert urllib.parse.parse_qs(csv_url.query)["format"] == ["csv"]
    assert page.problems == []

    shot = await page.send("Page.captureScreenshot", format="png")
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1000
    (tmp_path / "dashboard.png").write_bytes(png)
    target = os.environ.get("TRACKPIPE_DASHBOARD_SCREENSHOT")
    if target:
        await asyncio.to_thread(Path(target).write_bytes, png)


async def test_pickers_and_auto_refresh(edge: str, page: Page) -> None:
    await page.goto(f"{edge}/?refresh=1")
    await page.type_key(ADMIN_KEY)
    state = await page.wait_for("s.state === 'ready' && s.renders >= 1", "the first render")
    status, projects = http("GET", edge + "/api/v1/projects", None, ADMIN)
    assert status == 200
    # the picker lists the projects as the API does, the most recently active one chosen
    assert [o["text"] for o in state["picker"]] == [r["project"] for r in projects["rows"]]
    assert state["project"] == projects["rows"][0]["project"]

    # choose the reference project: the page shows its report and remembers it in the address
    await page.js("window.__marker = 'same page'")
    await page.choose("project", "12345")
    state = await page.wait_for("s.state === 'ready' && s.project === '12345'", "project 12345")
    assert_shows(state, api_report(edge, "12345"))
    assert "project=12345" in state["address"]

    # a custom period without events: empty chart and table
    await page.choose("period", "custom")
    await page.choose("from", "2020-01-01")
    await page.choose("to", "2020-01-31")
    state = await page.wait_for("s.state === 'ready' && s.visitors === '0'", "an empty period")
    assert state["chart"] == [] and state["chart_empty"] == "No conversions in this period"
    assert state["table"] == [["No conversions in this period"]]
    assert "period=custom" in state["address"] and "from=2020-01-01" in state["address"]
    status, body = http(
        "GET",
        f"{edge}/api/v1/reports/top-events?project=12345&from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
        None,
        ADMIN,
    )
    assert status == 200 and body["rows"] == [] and body["visitors"] == 0

    # back to the last 30 days; then new traffic appears by itself (auto-refresh, no reload)
    await page.js(
        "const s = document.getElementById('period'); s.value = '30'; s.dispatchEvent(new Event('change'))"
    )
    await page.wait_for("s.state === 'ready' && s.table.length === 2", "the 30-day report again")
    track(edge, "12345", "dashboard-visitor", [{"evt": "hitGoal", "goals": [12345]}])
    rows = [
        dict(EXPECTED_ROWS[0], conversions=3, converters=2, conversion_rate=0.666667),
        dict(EXPECTED_ROWS[1], conversion_rate=0.333333),
    ]
    report = wait_report(edge, "12345", rows, timeout=WAIT, headers=ADMIN)
    state = await page.wait_for("s.state === 'ready' && s.visitors === '3'", "the new visitor")
    assert_shows(state, report)
    assert state["marker"] == "same page"
    assert page.problems == []


async def test_data_is_rendered_as_text_never_as_markup(edge: str, page: Page) -> None:
    await page.goto(f"{edge}/?" + urllib.parse.urlencode({"project": XSS_PROJECT}))
    await page.type_key(ADMIN_KEY)
    state = await page.wait_for(
        f"s.state === 'ready' && s.project === {json.dumps(XSS_PROJECT)}", "the probe"
    )
    assert_shows(state, api_report(edge, XSS_PROJECT))
    assert state["table"][0][1] == XSS_GOAL and state["chart"][0]["goal"] == XSS_GOAL
    assert XSS_PROJECT in [o["text"] for o in state["picker"]]
    assert state["injected"] == 0 and state["pwned"] is None
    assert page.problems == []


async def test_the_page_asks_for_a_key_and_keeps_it_in_the_tab(edge: str, page: Page, tmp_path: Path) -> None:
    await page.goto(f"{edge}/")
    state = await page.wait_for("s.state === 'locked' && s.key_prompt", "the key prompt")
    assert "need a key" in state["status"] and state["table"] == [["No conversions in this period"]]
    assert state["picker"] == [] and state["stored_key"] is None

    # a wrong key: asked again, nothing kept
    await page.type_key("not-the-key-" + "x" * 30)
    state = await page.wait_for("s.state === 'locked' && s.status.includes('not accepted')", "refusal")
    assert state["stored_key"] is None

    # the shop's read key: its project only, the key in sessionStorage and never in the address
    await page.type_key(SHOP_KEY)
    state = await page.wait_for(f"s.state === 'ready' && s.project === '{SHOP}'", "the shop report")
    assert [o["value"] for o in state["picker"]] == [SHOP]
    assert_shows(state, api_report(edge, SHOP))
    assert state["stored_key"] == SHOP_KEY and SHOP_KEY not in state["address"]

    # the CSV link downloads with the key too
    await page.send("Page.setDownloadBehavior", behavior="allow", downloadPath=str(tmp_path))
    await page.js("document.getElementById('csv').click()")
    target = tmp_path / f"top-events-{SHOP}.csv"
    expected = get_raw(f"{edge}/api/v1/reports/top-events?project={SHOP}&format=csv", ADMIN)[2]
    deadline = time.monotonic() + WAIT
    while True:
        got = target.read_bytes().decode() if target.exists() else None
        if got == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert got == expected

    # a reload in the same tab does not ask again; another project is refused by name
    await page.goto(f"{edge}/?project=12345")
    state = await page.wait_for("s.state === 'error'", "the refusal of project 12345")
    assert "forbidden" in state["status"] and not state["key_prompt"]
    page.problems[:] = [p for p in page.problems if "status of 403" not in p]  # that refusal, as asked

    # "Forget key": asked again, nothing kept
    await page.js("document.getElementById('forget-key').click()")
    state = await page.wait_for("s.state === 'locked' && s.key_prompt", "the key prompt again")
    assert state["stored_key"] is None and state["table"] == [["No conversions in this period"]]
    assert page.problems == []


# -- delivery health (admin key only) ---------------------------------------------------------------

GONE_NAME = XSS_GOAL + "-" + "n" * 150  # markup, and long without a space


@pytest.fixture
def gone_edge(tmp_path: Path) -> Iterator[tuple[str, GoneReceiver]]:
    """`trackpipe run` delivering goal webhooks to 127.0.0.1, where a receiver answers 410 Gone."""
    receiver = GoneReceiver(free_port())
    receiver.up()
    try:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            "TRACKPIPE_ADMIN_KEY": ADMIN_KEY,
            "TRACKPIPE_READ_KEYS": f"default={SHOP_KEY}",
            "TRACKPIPE_OUTBOUND__ALLOW_NETWORKS": "127.0.0.0/8",
            "TRACKPIPE_OUTBOUND__RETRY_SCHEDULE_S": "0,0.2",
        }
        proc = Proc(
            ["run", "--port", str(port), "--data-dir", str(tmp_path / "data")], env, tmp_path / "run.log"
        )
        try:
            proc.wait_healthy(base, timeout=WAIT)
            yield base, receiver
        finally:
            assert proc.stop() == 0, proc.tail()
    finally:
        receiver.close()


def formatted(iso: str | None) -> str:
    """A time as the page shows it (UTC, to the minute)."""
    return iso[:16].replace("T", " ") if iso else "\u2013"


async def test_delivery_health_is_shown_with_the_admin_key_only(
    gone_edge: tuple[str, GoneReceiver], page: Page, tmp_path: Path
) -> None:
    base, receiver = gone_edge
    spec = {
        "goal": {
            "name": GONE_NAME,
            "goal_type": "purchase",
            "value": 5.0,
            "currency": "USD",
            "postback_url": f"http://127.0.0.1:{receiver.port}/gone",
        }
    }
    status, goal = http("POST", base + "/api/v1/conversions/goals", json.dumps(spec).encode(), ADMIN)
    assert status == 201, goal
    body = json.dumps({"value": 5, "currency": "USD", "order_id": "X"}).encode()
    status, answer = http("POST", f"{base}/api/conversions/track/{goal['token']}", body)
    assert status == 200, answer
    key = f"goal:{goal['id']}"

    def disabled() -> list[dict[str, Any]]:
        status, answer = http("GET", base + "/api/v1/endpoints", None, ADMIN)
        assert status == 200, answer
        return [e for e in answer["endpoints"] if e["key"] == key and e["disabled_at"]]

    def dead() -> list[dict[str, Any]]:
        status, answer = http("GET", base + "/api/v1/deliveries?status=dead&limit=500", None, ADMIN)
        assert status == 200, answer
        return answer["deliveries"]  # type: ignore[no-any-return]

    (endpoint,) = await asyncio.to_thread(wait_for, "the endpoint disabled", disabled, WAIT)
    assert endpoint["disabled_reason"] == "gone"
    (delivery,) = await asyncio.to_thread(wait_for, "the dead delivery", dead, WAIT)
    assert delivery["dead_reason"] == "gone"

    # the admin key: the section lists the disabled endpoint (as text) and counts the dead delivery
    await page.send("Network.enable")
    await page.goto(f"{base}/?refresh=1")
    await page.type_key(ADMIN_KEY)
    state = await page.wait_for("s.state === 'ready' && s.health", "the delivery health")
    health = state["health"]
    assert health["dead"] == "Dead deliveries (no more attempts): 1", health
    assert health["ok"] is None
    assert health["headers"] == ["Endpoint", "Consecutive failures", "Last failure (UTC)", "State"]
    assert health["rows"] == [
        {
            "key": key,
            "cells": [
                f"{GONE_NAME} {key}",
                str(endpoint["failures"]),
                formatted(endpoint["last_failure_at"]),
                f"disabled (gone) since {formatted(endpoint['disabled_at'])}",
            ],
        }
    ], health
    assert state["injected"] == 0 and state["pwned"] is None
    assert health["overflow"] <= 0 and health["right"] <= 1000, health
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    (tmp_path / "delivery-health.png").write_bytes(base64.b64decode(shot["data"]))

    # at phone width the long name wraps: nothing sticks out of the section or the screen
    await page.send(
        "Emulation.setDeviceMetricsOverride", width=360, height=740, deviceScaleFactor=1, mobile=True
    )
    state = await page.wait_for("s.state === 'ready' && s.health && s.health.right <= 360", "the phone width")
    assert state["health"]["overflow"] <= 0, state["health"]
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    (tmp_path / "delivery-health-phone.png").write_bytes(base64.b64decode(shot["data"]))

    # refreshed with the rest of the page: re-enabled, the endpoint is gone from the list
    status, answer = http("POST", f"{base}/api/v1/endpoints/{key}/enable", None, ADMIN)
    assert status == 200, answer
    state = await page.wait_for("s.state === 'ready' && s.health && s.health.ok", "the healthy endpoints")
    assert state["health"]["ok"] == "All delivery endpoints are healthy."
    assert state["health"]["rows"] == [] and state["health"]["dead"].endswith(": 1")

    # a read key: the section is hidden, and the refused endpoints are not asked again with it
    await page.js("document.getElementById('forget-key').click()")
    await page.type_key(SHOP_KEY)
    state = await page.wait_for(
        f"s.state === 'ready' && s.stored_key === '{SHOP_KEY}'", "the read key's page"
    )
    assert state["health"] is None and state["status"] == "", state
    asked = [u for u in page.requests if urllib.parse.urlsplit(u).path == "/api/v1/endpoints"]
    state = await page.wait_for(
        f"s.state === 'ready' && s.renders >= {state['renders'] + 2}", "two refreshes"
    )
    assert state["health"] is None
    assert [u for u in page.requests if urllib.parse.urlsplit(u).path == "/api/v1/endpoints"] == asked

    # nothing from another host
    hosts = {urllib.parse.urlsplit(u).netloc for u in page.requests if not u.startswith("data:")}
    assert hosts == {urllib.parse.urlsplit(base).netloc}, page.requests
    assert page.problems == []


# -- alert rules (admin key only) -------------------------------------------------------------------

RULE_NAME = XSS_GOAL + "-rule-" + "r" * 150  # markup, and long without a space


async def test_alert_rules_are_shown_with_the_admin_key_only(
    gone_edge: tuple[str, GoneReceiver], page: Page, tmp_path: Path
) -> None:
    base, _ = gone_edge
    spec = {"goal": {"name": "order", "goal_type": "purchase", "value": 1.0, "currency": "USD"}}
    status, goal = http("POST", base + "/api/v1/conversions/goals", json.dumps(spec).encode(), ADMIN)
    assert status == 201, goal
    # a window far longer than the test: the rule stays firing while the page is looked at
    rule_spec = {
        "project": "default",
        "name": RULE_NAME,
        "kind": "threshold",
        "op": "above",
        "value": 0,
        "window_s": 300,
        "scope": {"goal_id": goal["id"]},
    }
    status, rule = http("POST", base + "/api/v1/alerts", json.dumps(rule_spec).encode(), ADMIN)
    assert status == 201, rule
    body = json.dumps({"value": 1, "currency": "USD", "order_id": "A"}).encode()
    status, answer = http("POST", f"{base}/api/conversions/track/{goal['token']}", body)
    assert status == 200, answer

    def rules() -> list[dict[str, Any]]:
        status, answer = http("GET", base + "/api/v1/alerts?project=default", None, ADMIN)
        assert status == 200, answer
        return answer["alerts"]  # type: ignore[no-any-return]

    def firing() -> dict[str, Any] | None:
        time.sleep(0.2)  # gentle on the admin API's rate limit
        (found,) = rules()
        return found if found["status"] and found["status"]["state"] == "firing" else None

    await asyncio.to_thread(wait_for, "the rule firing", firing, WAIT)

    # the admin key: the rule, its state as text (and a class), since when, its last transitions
    await page.send("Network.enable")
    await page.goto(f"{base}/?refresh=1")
    await page.type_key(ADMIN_KEY)
    state = await page.wait_for(
        "s.state === 'ready' && s.alerts && s.alerts.rows.length === 1", "the alert rules"
    )
    (now,) = rules()
    alerts = state["alerts"]
    assert alerts["empty"] is None
    assert alerts["headers"] == ["Rule", "State", "Since (UTC)", "Last transitions (UTC)"]
    (row,) = alerts["rows"]
    lines = [
        f"{t['to_state']} at {t['at'][11:19]} (value {t['value']:g} > {t['threshold']:g})"
        for t in now["status"]["transitions"][:3]
    ]
    assert lines[0].startswith("firing at ") and lines[0].endswith("(value 1 > 0)"), lines
    assert row == {
        "id": rule["id"],
        "state": "firing",
        "state_class": "state state-firing",
        "cells": [
            f"{RULE_NAME} threshold · conversions",
            "firing",
            formatted(now["status"]["episode_started_at"]),
            "".join(lines),
        ],
        "transitions": lines,
    }, row
    assert state["injected"] == 0 and state["pwned"] is None
    assert alerts["overflow"] <= 0 and alerts["right"] <= 1000, alerts
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    (tmp_path / "alert-rules.png").write_bytes(base64.b64decode(shot["data"]))

    # at phone width the long name wraps: nothing sticks out of the section or the screen
    await page.send(
        "Emulation.setDeviceMetricsOverride", width=360, height=740, deviceScaleFactor=1, mobile=True
    )
    state = await page.wait_for("s.state === 'ready' && s.alerts && s.alerts.right <= 360", "the phone width")
    assert state["alerts"]["overflow"] <= 0, state["alerts"]
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    (tmp_path / "alert-rules-phone.png").write_bytes(base64.b64decode(shot["data"]))

    # refreshed with the rest of the page: disabled, then deleted
    patch = json.dumps({"enabled": False}).encode()
    status, answer = http("PATCH", f"{base}/api/v1/alerts/{rule['id']}", patch, ADMIN)
    assert status == 200, answer
    state = await page.wait_for(
        "s.state === 'ready' && s.alerts && s.alerts.rows.length && s.alerts.rows[0].cells[1] === 'disabled'",
        "the disabled rule",
    )
    status, answer = http("DELETE", f"{base}/api/v1/alerts/{rule['id']}", None, ADMIN)
    assert status == 204, answer
    state = await page.wait_for("s.state === 'ready' && s.alerts && s.alerts.empty", "no rules")
    assert state["alerts"]["empty"] == "No alert rules." and state["alerts"]["rows"] == []

    # a read key: the section is hidden, and the refused rules are not asked again with it
    await page.js("document.getElementById('forget-key').click()")
    await page.type_key(SHOP_KEY)
    state = await page.wait_for(
        f"s.state === 'ready' && s.stored_key === '{SHOP_KEY}'", "the read key's page"
    )
    assert state["alerts"] is None and state["status"] == "", state
    asked = [u for u in page.requests if urllib.parse.urlsplit(u).path == "/api/v1/alerts"]
    state = await page.wait_for(
        f"s.state === 'ready' && s.renders >= {state['renders'] + 2}", "two refreshes"
    )
    assert state["alerts"] is None
    assert [u for u in page.requests if urllib.parse.urlsplit(u).path == "/api/v1/alerts"] == asked

    # nothing from another host
    hosts = {urllib.parse.urlsplit(u).netloc for u in page.requests if not u.startswith("data:")}
    assert hosts == {urllib.parse.urlsplit(base).netloc}, page.requests
    assert page.problems == []
