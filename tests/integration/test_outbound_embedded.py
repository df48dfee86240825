"""Goal webhooks from ``trackpipe run`` (embedded default) to a real receiver on 127.0.0.1 (issue 13):
signed with the goal's secret, tracked / updated / reversed as the conversion changes, retried with the
same id and body, and none lost across a SIGKILL."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from schemas.outbound.signing import parse_secret, verify
from tests.integration.test_inputs_edge import ADMIN_KEY, AUTH, REF_PVTLNK
from tests.scenario import Proc, free_port, http

SCHEDULE = ",".join(["0"] + ["0.5"] * 49)  # about 25 s of retries in fractions of a second
DEADLINE_S = 60


class Receiver:
    """An aiohttp server in its own thread. Records every request; ``fail[path]`` answers 500 to the
    first attempts of each webhook-id on that path; ``redirect[path]`` answers 302 to that location."""

    def __init__(self, port: int, fail: dict[str, int] | None = None):
        self.port = port
        self.fail = fail or {}
        self.redirect: dict[str, str] = {}
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.calls: list[tuple[str, str, str]] = []  # (method, path, query string) of every request
        self.lock = threading.Lock()
        self._seen: dict[tuple[str, str], int] = {}
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        key = (request.path, headers.get("webhook-id", ""))
        with self.lock:
            self.requests.append((request.path, headers, body))
            self.calls.append((request.method, request.path, request.query_string))
            self._seen[key] = self._seen.get(key, 0) + 1
            n = self._seen[key]
        if request.path in self.redirect:
            return web.Response(status=302, headers={"Location": self.redirect[request.path]})
        return web.Response(status=500 if n <= self.fail.get(request.path, 0) else 204)

    def up(self) -> None:
        async def start() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def on(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(h, b) for p, h, b in self.requests if p == path]


def wait_for(what: str, check: Callable[[], Any], timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def due_rows(data: Path) -> list[dict[str, Any]]:
    """The embedded state's ``outbound_due`` table, read as an operator would."""
    path = data / "state.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM outbound_due")]
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        conn.close()


def _run(tmp_path: Path, port: int, log_name: str) -> Proc:
    env = {
        "TRACKPIPE_ADMIN_KEY": ADMIN_KEY,
        "TRACKPIPE_OUTBOUND__ALLOW_NETWORKS": "127.0.0.0/8",
        "TRACKPIPE_OUTBOUND__RETRY_SCHEDULE_S": SCHEDULE,
        "TRACKPIPE_OUTBOUND__TIMEOUT_S": "5",
    }
    args = ["run", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    proc = Proc(args, env, tmp_path / log_name)
    proc.wait_healthy(f"http://127.0.0.1:{port}")
    return proc


def _goal(base: str, url: str, name: str) -> dict[str, Any]:
    spec = {
        "goal": {"name": name, "goal_type": "purchase", "value": 99.0, "currency": "USD", "postback_url": url}
    }
    status, goal = http("POST", base + "/api/v1/conversions/goals", json.dumps(spec).encode(), AUTH)
    assert status == 201, goal
    return goal


def _verified(goal: dict[str, Any], headers: dict[str, str], body: bytes) -> dict[str, Any]:
    msg_id = verify(body, headers, parse_secret(goal["signing_secret"]), now=int(time.time()))
    assert msg_id == headers["webhook-id"]
    obj: dict[str, Any] = json.loads(body)
    return obj


def test_goal_webhooks_tracked_updated_reversed_and_retried(tmp_path):
    receiver = Receiver(free_port(), fail={"/flaky": 2})
    receiver.up()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _run(tmp_path, port, "run.log")
    try:
        hook = f"http://127.0.0.1:{receiver.port}/hook"
        goal = _goal(base, hook, "Q1 Sales")

        # PVTLNK token POST -> one conversion.tracked, signed with the secret shown at creation
        status, answer = http(
            "POST", f"{base}/api/conversions/track/{goal['token']}", json.dumps(REF_PVTLNK).encode()
        )
        assert status == 200, answer
        headers, body = wait_for("conversion.tracked", lambda: receiver.on("/hook"))[0]
        sent = _verified(goal, headers, body)
        assert sent["event"] == "conversion.tracked"
        for field in ("conversion_id", "link_id", "click_id", "value", "currency", "timestamp"):
            assert field in sent, field
        assert sent["value"] == 99.99 and sent["currency"] == "USD" and sent["order_id"] == "ORDER-12345"
        assert sent["goal_id"] == goal["id"] and sent["disable_postbacks"] is False
        assert headers["Content-Type"] == "application/json"

        # FunnelFlux: pending -> approved (new value) -> the same again (nothing) -> rejected
        pb = f"{base}/pb/?vid=ff-visitor&goal={goal['id']}&tx=ORD-7"
        events: list[dict[str, Any]] = []

        def order_events(n: int) -> list[dict[str, Any]] | None:
            got = [_verified(goal, h, b) for h, b in receiver.on("/hook")]
            mine = [e for e in got if e["order_id"] == "ORD-7"]
            return mine if len(mine) >= n else None

        assert http("GET", pb + "&rev=10&status=pending")[0] == 200
        events = wait_for("pending tracked", lambda: order_events(1))
        assert events[0]["event"] == "conversion.tracked" and events[0]["status"] == "pending"
        assert http("GET", pb + "&rev=25&status=approved")[0] == 200
        events = wait_for("approved updated", lambda: order_events(2))
        assert events[1]["event"] == "conversion.updated"
        assert events[1]["value"] == 25 and events[1]["status"] == "approved"
        assert http("GET", pb + "&rev=25&status=approved")[0] == 200  # changes nothing
        assert http("GET", pb + "&status=rejected")[0] == 200
        events = wait_for("rejected reversed", lambda: order_events(3))
        assert events[2]["event"] == "conversion.reversed"
        assert {e["conversion_id"] for e in events} == {events[0]["conversion_id"]}
        planned = [r for r in due_rows(tmp_path / "data") if b'"ORD-7"' in r["body"]]
        assert sorted(r["event"] for r in planned) == [
            "conversion.reversed",
            "conversion.tracked",
            "conversion.updated",
        ]  # the duplicate planned nothing
        assert len(order_events(3) or []) == 3

        # a receiver answering 500 twice: the third attempt delivers the same id and body
        flaky = _goal(base, f"http://127.0.0.1:{receiver.port}/flaky", "Flaky")
        body_in = json.dumps({"value": 5, "currency": "EUR", "order_id": "FLAKY-1"}).encode()
        assert http("POST", f"{base}/api/conversions/track/{flaky['token']}", body_in)[0] == 200
        attempts = wait_for("three attempts", lambda: receiver.on("/flaky")[2:] and receiver.on("/flaky"))
        assert len({h["webhook-id"] for h, _ in attempts}) == 1
        assert len({b for _, b in attempts}) == 1
        for h, b in attempts:
            _verified(flaky, h, b)

        def delivered() -> dict[str, Any] | None:
            rows = [r for r in due_rows(tmp_path / "data") if r["goal_id"] == flaky["id"]]
            return rows[0] if rows and rows[0]["status"] == "delivered" else None

        row = wait_for("flaky delivered", delivered)
        assert row["attempts"] == 3 and row["last_status"] == 204
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()


def test_goal_webhooks_survive_sigkill(tmp_path):
    receiver = Receiver(free_port())  # down until after the restart
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    proc = _run(tmp_path, port, "run1.log")
    orders = [f"KILL-{i}" for i in range(12)]
    try:
        goal = _goal(base, f"http://127.0.0.1:{receiver.port}/hook", "Killed")
        track = f"{base}/api/conversions/track/{goal['token']}"
        for order in orders[:8]:
            body = json.dumps({"value": 10, "currency": "USD", "order_id": order}).encode()
            assert http("POST", track, body)[0] == 200
        # planned, and failing against the receiver that is down
        wait_for(
            "attempts failing",
            lambda: (r := due_rows(data)) and len(r) == 8 and all(x["attempts"] >= 1 for x in r),
        )
        for order in orders[8:]:  # accepted, maybe not yet processed when the process dies
            body = json.dumps({"value": 10, "currency": "USD", "order_id": order}).encode()
            assert http("POST", track, body)[0] == 200
    finally:
        proc.stop(signal.SIGKILL)

    proc = _run(tmp_path, port, "run2.log")
    try:
        receiver.up()

        def all_arrived() -> dict[str, set[bytes]] | None:
            by_id: dict[str, set[bytes]] = {}
            for h, b in receiver.on("/hook"):
                _verified(goal, h, b)
                by_id.setdefault(h["webhook-id"], set()).add(b)
            got = {json.loads(next(iter(bodies)))["order_id"] for bodies in by_id.values()}
            return by_id if got == set(orders) else None

        by_id = wait_for("every delivery", all_arrived)
        assert len(by_id) == len(orders)  # one id per conversion
        assert all(len(bodies) == 1 for bodies in by_id.values())  # each id always with one body
        assert {r["id"] for r in due_rows(data)} == set(by_id)
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()
