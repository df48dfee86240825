"""The alerts scenario (issue 14), whatever runs the pipeline behind the edge: a threshold, a spike
and an absence rule on one goal, steady traffic, then a burst of conversions, then silence. Each rule
must go pending/firing/resolved at the expected points and the receiver must get each notifying
transition exactly once (by id), signed with the rule's secret; Slack bodies too."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from schemas.outbound.signing import parse_secret, verify
from tests.integration.test_inputs_edge import AUTH
from tests.integration.test_outbound_embedded import Receiver, wait_for
from tests.scenario import http

ALERT_PATH = "/alert"
SLACK_PATH = "/slack"
WINDOW_S = 10


def create_rule(base: str, spec: dict[str, Any]) -> dict[str, Any]:
    status, rule = http("POST", base + "/api/v1/alerts", json.dumps(spec).encode(), AUTH)
    assert status == 201, rule
    return rule


class Traffic:
    """Clicks on a link every ``every_s`` in a thread (the project's traffic: the rules' rate base and
    the absence rule's "while the project has traffic")."""

    def __init__(self, base: str, link_id: str, every_s: float = 0.5):
        self.base, self.link_id, self.every_s = base, link_id, every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import urllib.request

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        while not self.stop.wait(self.every_s):
            try:
                opener.open(f"{self.base}/c/{self.link_id}", timeout=5)
            except Exception:  # a 302 without redirect following surfaces as an HTTPError
                pass

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def alert_hooks(receiver: Receiver, secrets: dict[str, str]) -> list[dict[str, Any]]:
    """The verified alert webhooks received, in arrival order (signature checked with the rule's key)."""
    out = []
    for headers, body in receiver.on(ALERT_PATH):
        obj = json.loads(body)
        secret = secrets[obj["rule"]["id"]]
        assert verify(body, headers, parse_secret(secret), now=int(time.time())) == headers["webhook-id"]
        assert headers["webhook-id"] == obj["transition_id"]
        out.append(obj)
    return out


def states_of(hooks: list[dict[str, Any]], rule_id: str) -> list[str]:
    return [h["state"] for h in hooks if h["rule"]["id"] == rule_id]


def run_alerts_scenario(base: str, receiver: Receiver, timeout: float = 90) -> dict[str, Any]:
    """Creates a goal, a link and three rules, runs traffic, a burst and silence; returns the rules and
    the hooks received."""
    spec = {"goal": {"name": "Alerted", "goal_type": "purchase", "value": 10.0, "currency": "USD"}}
    status, goal = http("POST", base + "/api/v1/conversions/goals", json.dumps(spec).encode(), AUTH)
    assert status == 201, goal
    status, link = http(
        "POST", base + "/api/v1/links", json.dumps({"url": "https://shop.example/a"}).encode(), AUTH
    )
    assert status == 201, link
    hook = f"http://127.0.0.1:{receiver.port}"
    channels = {"webhook_url": hook + ALERT_PATH, "slack_url": hook + SLACK_PATH}
    scope = {"goal_id": goal["id"]}
    common = {"project": goal["project"], "scope": scope, "channels": channels, "window_s": WINDOW_S}
    threshold = create_rule(  # true for 2 s before it fires: normal -> pending -> firing
        base, {**common, "name": "many", "kind": "threshold", "op": "above", "value": 2, "pending_s": 2}
    )
    spike = create_rule(base, {**common, "name": "spike", "kind": "spike", "min_count": 3, "factor": 2})
    absence = create_rule(
        base,
        {"project": goal["project"], "scope": scope, "channels": channels, "name": "quiet",
         "kind": "absence", "absence_s": WINDOW_S},
    )  # fmt: skip
    secrets = {r["id"]: r["signing_secret"] for r in (threshold, spike, absence)}
    hooks = lambda: alert_hooks(receiver, secrets)  # noqa: E731
    names = {threshold["id"]: "threshold", spike["id"]: "spike", absence["id"]: "absence"}

    def wait(what: str, check: Callable[[], bool]) -> None:
        try:
            wait_for(what, check, timeout)
        except AssertionError:
            seen = [
                (names[h["rule"]["id"]], h["state"], h["value"], h["threshold"], h["at"]) for h in hooks()
            ]
            raise AssertionError(f"timed out waiting for {what}; received: {seen}") from None

    # A spike's baseline is the mean per window over the whole minutes before the window, counted since
    # the minute after its rule was created (docs/alerts.md): the burst comes once one such minute has
    # passed before a window that holds it.
    created = time.time()
    first_minute = (int(created) // 60 + 1) * 60
    burst_at = first_minute + 60 + WINDOW_S - 2
    with Traffic(base, link["id"]):
        # traffic and no conversion: the absence rule fires
        wait("absence firing", lambda: states_of(hooks(), absence["id"]) == ["firing"])
        wait_for("the spike rule's first whole minute", lambda: time.time() >= burst_at, timeout + 150)
        assert states_of(hooks(), threshold["id"]) == [] and states_of(hooks(), spike["id"]) == []
        # a burst: threshold and spike fire, absence resolves
        for i in range(4):
            body = json.dumps({"value": 10, "currency": "USD", "order_id": f"BURST-{i}"}).encode()
            status, answer = http("POST", f"{base}/api/conversions/track/{goal['token']}", body)
            assert status == 200, answer
        wait(
            "threshold and spike firing, absence resolved",
            lambda: (
                states_of(hooks(), threshold["id"]) == ["firing"]
                and states_of(hooks(), spike["id"]) == ["firing"]
                and states_of(hooks(), absence["id"]) == ["firing", "resolved"]
            ),
        )
        # silence again: both resolve once the burst leaves the window; absence fires again
        wait(
            "threshold and spike resolved, absence firing again",
            lambda: (
                states_of(hooks(), threshold["id"]) == ["firing", "resolved"]
                and states_of(hooks(), spike["id"]) == ["firing", "resolved"]
                and states_of(hooks(), absence["id"]) == ["firing", "resolved", "firing"]
            ),
        )
    got = hooks()
    ids = [h["transition_id"] for h in got]
    assert len(ids) == len(set(ids)) == 7, got  # each transition exactly once
    for h in got:
        assert h["event"] == f"alert.{h['state']}" and h["project"] == goal["project"]
    # each transition's from_state: the threshold rule went through pending, the others fired at once
    moves = {(names[h["rule"]["id"]], h["from_state"], h["state"]) for h in got}
    assert moves == {
        ("threshold", "pending", "firing"),
        ("threshold", "firing", "resolved"),
        ("spike", "normal", "firing"),
        ("spike", "firing", "resolved"),
        ("absence", "normal", "firing"),
        ("absence", "firing", "resolved"),
    }, moves
    # the same transitions as Slack-compatible bodies, unsigned
    slack = [json.loads(b) for _, b in receiver.on(SLACK_PATH)]
    assert len(slack) == 7 and all("text" in s and "blocks" in s for s in slack)
    with receiver.lock:
        assert all(
            "webhook-signature" not in {k.lower() for k in h}
            for p, h, _ in receiver.requests
            if p == SLACK_PATH
        )
    return {"rules": (threshold, spike, absence), "hooks": got, "goal": goal}


def check_rule_statuses(base: str, done: dict[str, Any]) -> None:
    """After :func:`run_alerts_scenario`: the admin API says where each rule stands, with its last
    transitions (newest first), those notified being the webhooks received."""
    status, found = http("GET", f"{base}/api/v1/alerts", headers=AUTH)
    assert status == 200, found
    now = {a["id"]: a["status"] for a in found["alerts"]}
    threshold, spike, absence = done["rules"]
    assert now[absence["id"]]["state"] == "firing" and now[threshold["id"]]["state"] == "normal", now
    assert [t["to_state"] for t in now[threshold["id"]]["transitions"]][:3] == [
        "resolved",
        "firing",
        "pending",
    ]
    notified = [t["id"] for t in now[spike["id"]]["transitions"] if t["notified"]]
    assert sorted(notified) == sorted(
        h["transition_id"] for h in done["hooks"] if h["rule"]["id"] == spike["id"]
    )


def fire_one_episode(
    base: str, receiver: Receiver, timeout: float = 120
) -> tuple[dict[str, str], dict[str, Any]]:
    """A goal, a threshold rule (above 2 in WINDOW_S) notifying ``receiver``, three conversions: waits for
    the firing webhook and returns (the rule's secrets by id, that firing's body)."""
    spec = {"goal": {"name": "Killed", "goal_type": "purchase", "value": 1.0, "currency": "USD"}}
    status, goal = http("POST", base + "/api/v1/conversions/goals", json.dumps(spec).encode(), AUTH)
    assert status == 201, goal
    rule = create_rule(
        base,
        {"project": goal["project"], "scope": {"goal_id": goal["id"]}, "name": "many",
         "kind": "threshold", "op": "above", "value": 2, "window_s": WINDOW_S,
         "channels": {"webhook_url": f"http://127.0.0.1:{receiver.port}{ALERT_PATH}"}},
    )  # fmt: skip
    secrets = {rule["id"]: rule["signing_secret"]}
    for i in range(3):
        body = json.dumps({"value": 1, "currency": "USD", "order_id": f"K-{i}"}).encode()
        assert http("POST", f"{base}/api/conversions/track/{goal['token']}", body)[0] == 200
    [firing] = wait_for("firing", lambda: alert_hooks(receiver, secrets), timeout)
    assert firing["state"] == "firing"
    return secrets, firing
