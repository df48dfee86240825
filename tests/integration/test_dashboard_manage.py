"""The dashboard's goals and links management (issue 17), a phone width, empty views and the API the
views read, in headless Chromium against a `trackpipe run` subprocess with the scripted market traffic
(tests/dashboard_scenario.py). Helpers and the page state read back: tests/dashboard_pages.py.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

from tests import dashboard_pages as pages
from tests.dashboard_pages import MARKET_KEY, api, fill, only_this_host, open_page, period_from, shoot, wait
from tests.dashboard_scenario import LONG_CAMPAIGN, MARKET
from tests.integration import test_dashboard as base
from tests.integration.test_dashboard import ADMIN, Page
from tests.scenario import http

chromium, page, edge = base.chromium, base.page, pages.edge  # the fixtures, shared

# -- goals and links management ---------------------------------------------------------------------


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


#: Every visible text of the page whose WCAG contrast with what is behind it is below AA (4.5, or 3 for
#: large text): text colour (SVG: fill) against the first opaque background up the tree.
LOW_CONTRAST = """(() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = (el) => {
    for (let at = el; at; at = at.parentElement) {
      const c = rgb(getComputedStyle(at).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || el.closest("[hidden], option, title")) continue;
    const style = getComputedStyle(el);
    const fg = rgb(el instanceof SVGElement ? style.fill : style.color).slice(0, 3);
    const [a, b] = [lum(fg), lum(behind(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const name = `${el.tagName}.${el.className.baseVal ?? el.className}`;
    if (ratio < (large ? 3 : 4.5)) low.push(`${name}: ${ratio.toFixed(2)}`);
  }
  return low;
})()"""


async def test_text_contrast_is_at_least_aa_in_every_view(
    edge: tuple[str, dict[str, Any]], page: Page
) -> None:
    address, _ = edge
    await open_page(page, f"{address}/?project={MARKET}&refresh=3600")
    for view, ready in (
        ("top", "s.series.conversions"),
        ("link", "s.link.shown"),
        ("experiment", "s.experiment.shown"),
        ("manage", "s.manage.goals.length"),
    ):
        await page.js(f"document.getElementById('tab-{view}').click()")
        await wait(page, f"s.state === 'ready' && s.view === '{view}' && {ready}", f"the {view} view")
        assert await page.js(LOW_CONTRAST) == [], view
    only_this_host(page, address)
