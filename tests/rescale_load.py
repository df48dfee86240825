"""A steady stream of tracking traffic through an edge, for the rescale test (issue 15): clicks on a
tracking link, Convert experiment views, goal hits and transactions (with repeated order ids), and
FunnelFlux postbacks by visitor that move orders from pending to approved. Every answer is recorded; a
non-2xx answer is a failure of the test."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from tests.integration.test_inputs_edge import AUTH
from tests.scenario import http


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the click's 302 is the answer; its destination is never requested


_OPENER = urllib.request.build_opener(_NoRedirect)


class Load:
    def __init__(self, base: str, rate_per_s: float = 25.0, visitors: int = 120):
        self.base = base
        self.rate = rate_per_s
        self.visitors = visitors
        self.answers: Counter[int] = Counter()
        self.failures: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rescale-load", daemon=True)
        spec = {"goal": {"name": "Sale", "goal_type": "purchase", "project": "resc"}}
        status, self.goal = http("POST", f"{base}/api/v1/conversions/goals", json.dumps(spec).encode(), AUTH)
        assert status == 201, self.goal
        link = {"url": "https://shop.example/offer", "goal": self.goal["id"], "project": "resc"}
        status, self.link = http("POST", f"{base}/api/v1/links", json.dumps(link).encode(), AUTH)
        assert status == 201, self.link

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _send(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
        req = urllib.request.Request(
            self.base + path,
            data=body,
            method=method,
            headers={"User-Agent": "rescale-load", **(headers or {})},
        )
        self.requests += 1
        try:
            with _OPENER.open(req, timeout=30) as resp:
                self.answers[resp.status] += 1
        except urllib.error.HTTPError as exc:
            self.answers[exc.code] += 1
            if exc.code != 302:  # the click's redirect is its success
                self.failures.append(f"{method} {path}: {exc.code} {exc.read()[:200]!r}")
        except OSError as exc:
            self.answers[0] += 1
            self.failures.append(f"{method} {path}: {exc}")

    def round(self, r: int) -> None:
        v = f"rescale-visitor-{r % self.visitors:04d}"
        self._send("GET", f"/c/{self.link['id']}?clickid=ext-{r}", headers={"Cookie": f"tp_vid={v}"})
        body: dict[str, Any] = {
            "cid": "resc",
            "pid": "resc",
            "vid": v,
            "ev": [
                {"evt": "viewExp", "exps": ["E1"], "vars": [str(r % 2)]},
                {"evt": "hitGoal", "goals": [100 + r % 3], "exps": ["E1"], "vars": [str(r % 2)]},
            ],
        }
        if r % 3 == 0:  # a transaction; every fifth one repeats an earlier order id (deduplicated)
            order = f"O-{r - 15 if r % 5 == 0 and r >= 15 else r}"
            body["ev"].append({"evt": "tr", "goals": [7], "tid": order, "r": 10 + r % 7, "prc": 1})
        self._send("POST", "/track", json.dumps(body).encode(), {"Content-Type": "application/json"})
        if r % 4 == 1:  # a postback by visitor: pending now, approved four rounds later
            tx = f"FF-{r}"
            self._send("GET", f"/pb/?vid={v}&goal={self.goal['id']}&tx={tx}&rev={r % 9 + 1}&status=pending")
        if r % 4 == 1 and r >= 5:
            earlier = r - 4
            v_then = f"rescale-visitor-{earlier % self.visitors:04d}"
            query = (
                f"vid={v_then}&goal={self.goal['id']}&tx=FF-{earlier}&rev={earlier % 9 + 2}&status=approved"
            )
            self._send("GET", f"/pb/?{query}")

    def _run(self) -> None:
        r = 0
        start = time.monotonic()
        while not self._stop.is_set():
            self.round(r)
            r += 1
            ahead = start + r / self.rate - time.monotonic()
            if ahead > 0:
                self._stop.wait(ahead)
