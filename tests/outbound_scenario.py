"""The outbound scenario (issue 13): one scripted set of conversions through the edge, and the exact goal
webhooks and S2S postbacks it must yield at a real receiver, whatever runs the pipeline behind the edge
(``trackpipe run``, or ``trackpipe edge`` + Kafka + ``trackpipe worker``).

:func:`send_outbound_scenario` creates a goal with a ``postback_url`` and a link with a traffic-source
postback template, then sends the PVTLNK reference requests (token POST, pixel, server API), FunnelFlux
``hit`` and ``vid`` + ``p`` postbacks, duplicates, pending -> approved, approved -> rejected and
``disable_postbacks=true``; it returns what must arrive. :func:`check_deliveries` waits for all of it,
then for a sentinel conversion sent last (its webhook is planned in a later batch than everything
before it), and asserts that exactly the expected deliveries arrived: no more, no fewer, each goal
webhook with a valid Standard Webhooks signature and each ``webhook-id`` with one body.

Order matters only where the pipeline would otherwise be free to fold two events into one row (pending
then approved, approved then rejected, a later duplicate): there the scenario waits for the first
delivery before sending the next event.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from schemas.outbound.signing import parse_secret, verify
from tests.integration.test_inputs_edge import AUTH, REF_PVTLNK
from tests.integration.test_outbound_embedded import Receiver, wait_for
from tests.scenario import http

HOOK = "/hook"
POSTBACK = "/pb"
PIXEL_GIF_TYPE = "image/gif"

#: A hook as the receiver must see it: (order id, event) -> the body's fields that matter.
HookKey = tuple[str, str]


@dataclass
class Expected:
    """What the scenario must yield at the receiver."""

    base: str
    goal: dict[str, Any]
    link: dict[str, Any]
    hooks: dict[HookKey, dict[str, Any]] = field(default_factory=dict)
    #: (method, parsed query) of each S2S postback, in any order
    postbacks: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    #: order id -> click id (the tracker's hit id) of the conversions sent by ``hit``
    hits: dict[str, str] = field(default_factory=dict)

    def hook(self, order: str, event: str, **fields: Any) -> None:
        assert (order, event) not in self.hooks, (order, event)
        self.hooks[(order, event)] = {"order_id": order, "event": event, **fields}


def _ok(status: int, answer: Any, what: str) -> None:
    assert status == 200, f"{what}: {status} {answer}"


def _redirect_of(url: str) -> tuple[str, str]:
    """A click: its redirect's ``Location`` and the visitor id the tracker set (``tp_vid``)."""

    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(Keep)
    try:
        opener.open(urllib.request.Request(url, headers={"User-Agent": "outbound-scenario"}), timeout=30)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302, exc.code
        cookies = [c.split(";")[0].split("=", 1) for c in exc.headers.get_all("Set-Cookie") or []]
        visitor = next(v for k, v in cookies if k.strip() == "tp_vid")
        return str(exc.headers["Location"]), visitor
    raise AssertionError(f"{url} did not redirect")


def _pixel(url: str) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "outbound-scenario-pixel"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == PIXEL_GIF_TYPE, resp.status
        resp.read()


def verified_hooks(receiver: Receiver, goal: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every request at ``/hook`` as (webhook-id, body): each signature checked with the goal's secret."""
    secret = parse_secret(goal["signing_secret"])
    out = []
    for headers, body in receiver.on(HOOK):
        msg_id = verify(body, headers, secret, now=int(time.time()))
        assert msg_id == headers["webhook-id"]
        assert headers["Content-Type"] == "application/json"
        out.append((msg_id, json.loads(body)))
    return out


def received_postbacks(receiver: Receiver) -> list[tuple[str, dict[str, list[str]]]]:
    with receiver.lock:
        calls = list(receiver.calls)
    return [(method, parse_qs(query)) for method, path, query in calls if path == POSTBACK]


def _hooks_for(receiver: Receiver, goal: dict[str, Any], order: str) -> list[dict[str, Any]]:
    return [body for _, body in verified_hooks(receiver, goal) if body["order_id"] == order]


def send_outbound_scenario(base: str, receiver: Receiver, timeout: float = 60) -> Expected:
    """Send the scenario to the edge at ``base`` (admin key ``AUTH``; the receiver on 127.0.0.1 must be
    allowed by ``TRACKPIPE_OUTBOUND__ALLOW_NETWORKS``). Returns what must arrive at ``receiver``."""
    rport = receiver.port
    goal_spec = {
        "goal": {
            "name": "Q1 Sales",
            "goal_type": "purchase",
            "value": 99.0,
            "currency": "USD",
            "postback_url": f"http://127.0.0.1:{rport}{HOOK}",
        }
    }
    status, goal = http("POST", base + "/api/v1/conversions/goals", json.dumps(goal_spec).encode(), AUTH)
    assert status == 201, goal
    template = (
        f"http://127.0.0.1:{rport}{POSTBACK}?subid={{external_id}}&status={{status}}"
        "&payout={payout}&order={order_id}&cv={conversion_id}"
    )
    link_spec = {
        "url": "https://shop.example/offer",
        "goal": goal["id"],
        "external_click_param": "clickid",
        "postback_template": template,
        "postback_statuses": "normal reversed",
        "postback_status_map": "sale=bill rejected=trash",
    }
    status, link = http("POST", base + "/api/v1/links", json.dumps(link_spec).encode(), AUTH)
    assert status == 201, link
    exp = Expected(base, goal, link)
    common = {"goal_id": goal["id"], "project": goal["project"]}

    def hook_arrived(order: str, n: int) -> None:
        wait_for(f"{n} webhook(s) of {order}", lambda: len(_hooks_for(receiver, goal, order)) >= n, timeout)

    def click(external: str) -> tuple[str, str]:
        """(the tracker's click id, the visitor id) of a click carrying the source's ``external``."""
        location, visitor = _redirect_of(f"{base}/c/{link['id']}?clickid={external}")
        return parse_qs(urlsplit(location).query)["click_id"][0], visitor

    def s2s(external: str, status_text: str, payout: str, order: str) -> None:
        query = {"subid": [external], "status": [status_text], "payout": [payout], "order": [order]}
        exp.postbacks.append(("GET", query))  # cv (the conversion id) is compared with the webhook's

    track = f"{base}/api/conversions/track/{goal['token']}"

    # PVTLNK method 1, the reference body: token in the path, JSON body
    _ok(*http("POST", track, json.dumps(REF_PVTLNK).encode()), "PVTLNK token POST")
    exp.hook(
        "ORDER-12345", "conversion.tracked", value=99.99, currency="USD", status=None,
        status_class="normal", disable_postbacks=False, link_id=None, click_id=None, **common,
    )  # fmt: skip
    # PVTLNK method 3, the reference pixel (the goal's currency)
    _pixel(f"{track}?value=99.99&order_id=ORDER-123")
    exp.hook(
        "ORDER-123", "conversion.tracked", value=99.99, currency="USD", status=None,
        status_class="normal", disable_postbacks=False, link_id=None, click_id=None, **common,
    )  # fmt: skip
    # PVTLNK server API: token in the body
    api = {"postback_token": goal["token"], "value": 49.99, "currency": "EUR", "order_id": "ORDER-API-1"}
    _ok(*http("POST", base + "/api/v1/conversions/track", json.dumps(api).encode()), "PVTLNK API")
    exp.hook(
        "ORDER-API-1", "conversion.tracked", value=49.99, currency="EUR", status=None,
        status_class="normal", disable_postbacks=False, link_id=None, click_id=None, **common,
    )  # fmt: skip

    # FunnelFlux by hit (the tracker's click id; the source's own id on the click): webhook + S2S
    hit = exp.hits["FF-HIT-1"] = click("EXT-1")[0]
    _ok(*http("GET", f"{base}/pb/?hit={hit}&tx=FF-HIT-1&rev=20"), "FunnelFlux hit")
    exp.hook(
        "FF-HIT-1", "conversion.tracked", value=20, currency="USD", status=None,
        status_class="normal", disable_postbacks=False, link_id=link["id"], click_id=hit, **common,
    )  # fmt: skip
    s2s("EXT-1", "bill", "20", "FF-HIT-1")
    # FunnelFlux by visitor + page (the link): the visitor's click on that link -> webhook + S2S
    vid_click, visitor = click("EXT-5")
    exp.hits["FF-VID-1"] = vid_click
    _ok(*http("GET", f"{base}/pb/?vid={visitor}&p={link['id']}&tx=FF-VID-1&rev=3"), "FunnelFlux vid+p")
    exp.hook(
        "FF-VID-1", "conversion.tracked", value=3, currency="USD", status=None,
        status_class="normal", disable_postbacks=False, link_id=link["id"], click_id=vid_click, **common,
    )  # fmt: skip
    s2s("EXT-5", "bill", "3", "FF-VID-1")

    # duplicates, once the originals are recorded and delivered: nothing more
    hook_arrived("ORDER-12345", 1)
    hook_arrived("FF-HIT-1", 1)
    _ok(*http("POST", track, json.dumps(REF_PVTLNK).encode()), "PVTLNK duplicate")
    _ok(*http("GET", f"{base}/pb/?hit={hit}&tx=FF-HIT-1&rev=20"), "FunnelFlux duplicate")

    # pending -> approved: tracked (provisional), then updated with the real revenue; S2S on approval
    pa = exp.hits["FF-PA"] = click("EXT-2")[0]
    _ok(*http("GET", f"{base}/pb/?hit={pa}&tx=FF-PA&rev=10&status=pending"), "pending")
    exp.hook(
        "FF-PA", "conversion.tracked", value=0.01, currency="USD", status="pending",
        status_class="provisional", disable_postbacks=False, link_id=link["id"], click_id=pa, **common,
    )  # fmt: skip
    hook_arrived("FF-PA", 1)
    _ok(*http("GET", f"{base}/pb/?hit={pa}&tx=FF-PA&rev=25&status=approved"), "approved")
    exp.hook(
        "FF-PA", "conversion.updated", value=25, currency="USD", status="approved",
        status_class="normal", disable_postbacks=False, link_id=link["id"], click_id=pa, **common,
    )  # fmt: skip
    s2s("EXT-2", "bill", "25", "FF-PA")  # "sale" names the normal class: approved -> bill

    # approved -> rejected: tracked, then reversed; S2S for both (the link fires reversed ones too)
    ar = exp.hits["FF-AR"] = click("EXT-3")[0]
    _ok(*http("GET", f"{base}/pb/?hit={ar}&tx=FF-AR&rev=15&status=approved"), "approved")
    exp.hook(
        "FF-AR", "conversion.tracked", value=15, currency="USD", status="approved",
        status_class="normal", disable_postbacks=False, link_id=link["id"], click_id=ar, **common,
    )  # fmt: skip
    s2s("EXT-3", "bill", "15", "FF-AR")
    hook_arrived("FF-AR", 1)
    _ok(*http("GET", f"{base}/pb/?hit={ar}&tx=FF-AR&status=rejected"), "rejected")
    exp.hook(
        "FF-AR", "conversion.reversed", value=0, currency="USD", status="rejected", status_class="reversed",
        disable_postbacks=False, link_id=link["id"], click_id=ar, **common,
    )  # fmt: skip
    s2s("EXT-3", "trash", "0", "FF-AR")  # a reversed conversion has no revenue

    # disable_postbacks: the goal webhook says so, and no S2S postback fires
    dis = exp.hits["FF-DIS"] = click("EXT-4")[0]
    _ok(*http("GET", f"{base}/pb/?hit={dis}&tx=FF-DIS&rev=7&disable_postbacks=true"), "disable_postbacks")
    exp.hook(
        "FF-DIS", "conversion.tracked", value=7, currency="USD", status=None,
        status_class="normal", disable_postbacks=True, link_id=link["id"], click_id=dis, **common,
    )  # fmt: skip
    return exp


def _arrived(receiver: Receiver, exp: Expected) -> bool:
    got = {(b["order_id"], b["event"]) for _, b in verified_hooks(receiver, exp.goal)}
    return set(exp.hooks) <= got and len(received_postbacks(receiver)) >= len(exp.postbacks)


def received_count(receiver: Receiver) -> int:
    with receiver.lock:
        return len(receiver.requests)


def log_settled(base: str, receiver: Receiver) -> Callable[[], bool]:
    """Settled by the delivery log (``GET /api/v1/deliveries``, both modes): every delivery it holds is
    delivered and they are as many as the requests the receiver got (each delivered at its first
    attempt in these scenarios)."""

    def settled() -> bool:
        status, found = http("GET", f"{base}/api/v1/deliveries?limit=500", headers=AUTH)
        if status != 200:
            return False
        entries = found["deliveries"]
        return all(e["status"] == "delivered" for e in entries) and len(entries) == received_count(receiver)

    return settled


ATTRIBUTION_FIELDS = ("link_id", "click_id")


def fold_attribution_catch_ups(bodies: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Distributed mode only: a postback that overtakes its click's registration is counted at once,
    unattributed, and re-attributed when the click reaches the click stage (decision 79), so its
    receiver gets ``conversion.updated`` whose only change is the link and click. Folds each such
    update into the webhook before it (which then reads as attributed) and counts them."""
    out: list[dict[str, Any]] = []
    folded = 0
    last: dict[str, dict[str, Any]] = {}
    for b in sorted(bodies, key=lambda x: (x["conversion_id"], x["version"])):
        before = last.get(b["conversion_id"])
        same = before is not None and all(
            before[k] == b[k] for k in b if k not in (*ATTRIBUTION_FIELDS, "version", "event")
        )
        if before is not None and same and b["event"] == "conversion.updated" and before["link_id"] is None:
            for k in ATTRIBUTION_FIELDS:
                before[k] = b[k]
            folded += 1
            continue
        b = dict(b)
        last[b["conversion_id"]] = b
        out.append(b)
    return out, folded


def check_deliveries(
    receiver: Receiver,
    exp: Expected,
    settled: Callable[[], bool],
    timeout: float = 60,
    fold_catch_ups: bool = False,
) -> list[dict[str, Any]]:
    """Wait for every expected delivery, then for a sentinel conversion's webhook (planned after all
    of the scenario's batches), then until ``settled`` (the pipeline says no delivery is under way or
    due), then assert that exactly the expected deliveries arrived. Returns the webhook bodies (the
    sentinel's excluded)."""
    wait_for("every expected delivery", lambda: _arrived(receiver, exp), timeout)
    sentinel = f"SENTINEL-{time.time_ns()}"
    body = json.dumps({"value": 1, "currency": "USD", "order_id": sentinel}).encode()
    _ok(*http("POST", f"{exp.base}/api/conversions/track/{exp.goal['token']}", body), "sentinel")
    wait_for("the sentinel's webhook", lambda: _hooks_for(receiver, exp.goal, sentinel), timeout)
    wait_for("no delivery under way", settled, timeout)

    hooks = verified_hooks(receiver, exp.goal)
    by_id: dict[str, set[str]] = {}
    for msg_id, obj in hooks:
        by_id.setdefault(msg_id, set()).add(json.dumps(obj, sort_keys=True))
    assert all(len(bodies) == 1 for bodies in by_id.values()), "a webhook-id arrived with two bodies"
    bodies = [obj for _, obj in hooks if obj["order_id"] != sentinel]
    if fold_catch_ups:
        bodies, _ = fold_attribution_catch_ups(bodies)
    [sentinel_body] = [obj for _, obj in hooks if obj["order_id"] == sentinel]
    assert sentinel_body["event"] == "conversion.tracked"

    # exactly the expected webhooks, each once
    got = sorted((b["order_id"], b["event"]) for b in bodies)
    assert got == sorted(exp.hooks), f"webhooks: got {got}, expected {sorted(exp.hooks)}"
    conversion_of: dict[str, str] = {}
    for b in bodies:
        want = exp.hooks[(b["order_id"], b["event"])]
        for key, value in want.items():
            assert b[key] == value, f"{b['order_id']} {b['event']}: {key} = {b[key]!r}, expected {value!r}"
        for key in ("conversion_id", "timestamp", "version", "click_id", "value", "currency"):
            assert key in b, (b["order_id"], key)
        assert b["conversion_id"].startswith("cv_") and b["timestamp"].endswith("Z")
        # one conversion id per order, across its events
        assert conversion_of.setdefault(b["order_id"], b["conversion_id"]) == b["conversion_id"]
    assert len(set(conversion_of.values())) == len(conversion_of)  # and distinct across orders
    for order in {o for o, _ in exp.hooks}:  # each later event of an order has a higher version
        versions = [b["version"] for b in bodies if b["order_id"] == order]
        assert versions == sorted(set(versions)), (order, versions)

    # exactly the expected S2S postbacks, unsigned, each carrying the conversion's id
    postbacks = received_postbacks(receiver)
    for method, query in postbacks:
        order = query["order"][0]
        assert query.pop("cv") == [conversion_of[order]], (order, query)
    got_pb = sorted(json.dumps(pb, sort_keys=True) for pb in postbacks)
    want_pb = sorted(json.dumps(pb, sort_keys=True) for pb in exp.postbacks)
    assert got_pb == want_pb, (postbacks, exp.postbacks)
    with receiver.lock:
        unsigned = [h for p, h, _ in receiver.requests if p == POSTBACK]
    assert all("webhook-signature" not in {k.lower() for k in h} for h in unsigned)
    return bodies
