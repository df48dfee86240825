"""The scripted traffic of the dashboard views' tests (tests/integration/test_dashboard_views.py): one
project ("market") with a goal and two tracking links (clicks and postbacks), two push messages (opens and
Pushwoosh events), a campaign and an A/B experiment (convert-style tracking), sent to a running edge."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.scenario import http

MARKET = "market"
LONG_CAMPAIGN = "spring-sale-" + "x" * 120  # a very long name without a space


def redirect_of(url: str) -> str:
    """The Location of a redirect answer (not followed)."""

    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(Keep)
    try:
        opener.open(urllib.request.Request(url, headers={"User-Agent": "t"}), timeout=30)
    except urllib.error.HTTPError as exc:
        return str(exc.headers["Location"])
    raise AssertionError(f"{url} did not redirect")


def post_json(base: str, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    status, answer = http(
        "POST",
        base + path,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )
    assert status in (200, 201), (path, status, answer)
    return answer


def send_market(base: str, admin: dict[str, str]) -> dict[str, Any]:
    """Send the market traffic; returns the goal and links made (ids) and the counts sent."""
    goal = post_json(
        base,
        "/api/v1/conversions/goals",
        {"project": MARKET, "name": "Purchase", "goal_type": "purchase"},
        admin,
    )
    links = [
        post_json(
            base,
            "/api/v1/links",
            {"project": MARKET, "url": f"https://shop.example/{n}", "goal": goal["id"], "campaign": "mail"},
            admin,
        )
        for n in ("a", "b")
    ]
    # link a: 4 clicks, 3 of them convert (10, 20, 30); link b: 2 clicks, 1 converts (5)
    for link, values in ((links[0], ["10", "20", "30", None]), (links[1], ["5", None])):
        for n, value in enumerate(values):
            query = urllib.parse.urlsplit(redirect_of(f"{base}/c/{link['id']}")).query
            hit = urllib.parse.parse_qs(query)["click_id"][0]
            if value is not None:
                status, answer = http("GET", f"{base}/pb/?hit={hit}&tx={link['id']}-{n}&rev={value}")
                assert status == 200, answer
    # push A: 3 opens, 2 purchases; push B: 1 open, no event
    for device, push in (("d1", "push-A"), ("d2", "push-A"), ("d3", "push-A"), ("d4", "push-B")):
        stat = {"request": {"application": MARKET, "hwid": device, "hash": push}}
        post_json(base, "/json/1.3/pushStat", stat)
    for device in ("d1", "d2"):
        event = {"application": MARKET, "hwid": device, "event": "Buy", "attributes": {"msgHash": "push-A"}}
        post_json(base, "/json/1.3/postEvent", {"request": event})
    # 6 visitors of the long-named campaign in the experiment (A: 0, 2, 4; B: 1, 3, 5); signups: 0-3
    for v in range(6):
        events: list[dict[str, Any]] = [
            {"evt": "viewExp", "exps": ["checkout"], "vars": ["A" if v % 2 == 0 else "B"]}
        ]
        if v < 4:
            events.append({"evt": "hitGoal", "goals": ["signup"]})
        if v in (1, 3):
            events.append({"evt": "tr", "goals": ["order"], "r": "12.50", "tid": f"t-{v}"})
        body = {"cid": "1", "pid": MARKET, "vid": f"mv-{v}", "seg": {"campaign": LONG_CAMPAIGN}, "ev": events}
        post_json(base, "/track", body)
    return {"goal": goal, "links": links}


def wait_json(base: str, path: str, headers: dict[str, str], done: Any, timeout: float) -> Any:
    """GET ``path`` until ``done(answer)`` holds; the answer."""
    deadline = time.monotonic() + timeout
    answer: Any = None
    while time.monotonic() < deadline:
        status, answer = http("GET", base + path, None, headers)
        if status == 200 and done(answer):
            return answer
        time.sleep(0.3)
    raise AssertionError(f"{path} never got there; last answer: {answer}")
