"""The outbound deliveries' admin side on ``trackpipe run`` (issue 13): the delivery log in chdb read by
``GET /api/v1/deliveries``, single and bulk retry, the outbound metrics and ``trackpipe deliveries``,
against a real receiver on 127.0.0.1 that first answers 500 to everything, then 204."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.integration.test_inputs_edge import ADMIN_KEY, AUTH
from tests.integration.test_outbound_embedded import Receiver, _goal, wait_for
from tests.scenario import Proc, free_port, http

FAST = "0,0.2"  # two attempts, 0.2 s apart: dead in well under a second


class SwitchReceiver(Receiver):
    """Answers 500 with a short text while ``down``, else 204."""

    down = True

    async def _handle(self, request: web.Request) -> web.Response:
        await super()._handle(request)
        if self.down:
            return web.Response(status=500, text="receiver says no")
        return web.Response(status=204)


def _run(tmp_path: Path, port: int) -> Proc:
    env = {
        "TRACKPIPE_ADMIN_KEY": ADMIN_KEY,
        "TRACKPIPE_OUTBOUND__ALLOW_NETWORKS": "127.0.0.0/8",
        "TRACKPIPE_OUTBOUND__RETRY_SCHEDULE_S": FAST,
        "TRACKPIPE_OUTBOUND__TIMEOUT_S": "5",
    }
    proc = Proc(["run", "--port", str(port), "--data-dir", str(tmp_path / "data")], env, tmp_path / "run.log")
    proc.wait_healthy(f"http://127.0.0.1:{port}")
    return proc


def _list(base: str, **params: str) -> list[dict[str, Any]]:
    status, answer = http("GET", f"{base}/api/v1/deliveries?{urllib.parse.urlencode(params)}", headers=AUTH)
    assert status == 200, answer
    found: list[dict[str, Any]] = answer["deliveries"]
    return found


def _metrics(base: str) -> str:
    request = urllib.request.Request(f"{base}/metrics", headers=AUTH)
    with urllib.request.urlopen(request, timeout=10) as resp:
        return str(resp.read().decode())


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackpipe.cli", "deliveries", *args],
        env={**os.environ, "TRACKPIPE_ADMIN_KEY": ADMIN_KEY},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_deliveries_listed_retried_counted_and_shown_by_the_cli(tmp_path: Path) -> None:
    receiver = SwitchReceiver(free_port())
    receiver.up()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _run(tmp_path, port)
    try:
        goal = _goal(base, f"http://127.0.0.1:{receiver.port}/down", "Down")
        other = _goal(base, f"http://127.0.0.1:{receiver.port}/other", "Other")
        for order in ("A1", "A2", "A3"):
            body = json.dumps({"value": 10, "currency": "USD", "order_id": order}).encode()
            assert http("POST", f"{base}/api/conversions/track/{goal['token']}", body)[0] == 200

        # dead after two attempts, in the log with both attempts (the log is written in the background)
        def dead() -> list[dict[str, Any]] | None:
            rows = _list(base, goal=goal["id"], status="dead")
            return rows if len(rows) == 3 and all(len(d["attempts_log"]) == 2 for d in rows) else None

        rows = wait_for("three dead deliveries in the log", dead)
        for d in rows:
            assert d["kind"] == "webhook" and d["event"] == "conversion.tracked" and d["method"] == "POST"
            assert d["project"] == "default" and d["url"].endswith("/down") and d["attempts"] == 2
            assert d["dead_reason"] == "exhausted" and d["next_at"] is None
            first, second = d["attempts_log"]
            assert (first["attempt"], first["status"], first["status_code"]) == (1, "failed", 500)
            assert first["next_at"] is not None and first["error"] == "server_error"
            assert (second["attempt"], second["status"], second["dead_reason"]) == (2, "dead", "exhausted")
            assert second["response_body"] == "receiver says no" and second["latency_ms"] >= 0
        assert _list(base, goal=other["id"]) == []
        assert _list(base, status="delivered") == []
        assert len(_list(base, project="default", limit="2")) == 2
        assert _list(base, project="nope") == []
        assert len(_list(base, since="2000-01-01T00:00:00Z")) == 3
        assert _list(base, since="2199-01-01T00:00:00+00:00") == []

        # bad input: 400 naming the field, never a 500
        for query, field in (
            ("status=bogus", "status"),
            ("limit=0", "limit"),
            ("limit=x", "limit"),
            ("since=yesterday", "since"),
            ("since=2026-01-01T00:00:00", "since"),  # no zone
            ("colour=red", "colour"),
        ):
            status, answer = http("GET", f"{base}/api/v1/deliveries?{query}", headers=AUTH)
            assert status == 400 and field in answer["error"]["message"], (query, answer)
        for raw, field in ((b'{"status": "delivered"}', "status"), (b'{"limit": -1}', "limit"), (b"[1]", "")):
            status, answer = http("POST", f"{base}/api/v1/deliveries/retry", raw, AUTH)
            assert status == 400 and field in answer["error"]["message"], (raw, answer)
        assert http("GET", f"{base}/api/v1/deliveries")[0] == 401  # the admin key is required
        assert http("POST", f"{base}/api/v1/deliveries/nope/retry", None, AUTH)[0] == 404
        assert http("POST", f"{base}/api/v1/deliveries/retry?x=1", b"{}", AUTH)[0] == 400

        metrics = _metrics(base)
        assert 'trackpipe_outbound_attempts_total{kind="webhook"} 6.0' in metrics
        assert 'trackpipe_outbound_failures_total{kind="webhook",reason="server_error"} 6.0' in metrics
        assert 'trackpipe_outbound_deliveries_total{kind="webhook",result="dead"} 3.0' in metrics
        assert "trackpipe_outbound_first_attempt_seconds_count 3.0" in metrics
        assert "trackpipe_outbound_queue_depth" in metrics

        # the receiver is back: one retried by id, then the others in bulk
        receiver.down = False
        one = rows[0]["id"]
        status, answer = http("POST", f"{base}/api/v1/deliveries/{one}/retry", None, AUTH)
        assert status == 200 and answer == {"retried": 1, "ids": [one]}, answer

        def delivered(n: int) -> list[dict[str, Any]] | None:
            found = _list(base, goal=goal["id"], status="delivered")
            return found if len(found) == n else None

        (got,) = wait_for("the retried delivery delivered", lambda: delivered(1))
        assert got["id"] == one and got["attempts"] == 3
        assert [a["status"] for a in got["attempts_log"]] == ["failed", "dead", "delivered"]
        assert got["attempts_log"][-1]["status_code"] == 204
        status, answer = http("POST", f"{base}/api/v1/deliveries/{one}/retry", None, AUTH)
        assert status == 409 and answer["error"]["code"] == "delivered", answer

        # CLI, while two are still dead
        out = _cli(["list", "--url", base, "--status", "dead"], tmp_path)
        assert out.returncode == 0, out.stderr
        assert {d["id"] for d in rows[1:]} <= set(out.stdout.split()) and "2 deliveries" in out.stdout
        out = _cli(["retry", "--url", base, "--goal", goal["id"], "--status", "dead"], tmp_path)
        assert out.returncode == 0, out.stderr
        assert "retried 2 of 2" in out.stdout
        wait_for("all delivered", lambda: delivered(3))
        status, answer = http("POST", f"{base}/api/v1/deliveries/retry", b"{}", AUTH)
        assert status == 200 and answer == {"retried": 0, "ids": []}, answer

        out = _cli(["list", "--url", base, "--attempts"], tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.count("delivered") >= 3 and "3 deliveries" in out.stdout
        assert (
            _cli(
                ["list", "--url", base, "--admin-key", "wrong-key-0123456789-abcdefghijklmn"], tmp_path
            ).returncode
            == 1
        )

        metrics = _metrics(base)
        assert 'trackpipe_outbound_deliveries_total{kind="webhook",result="delivered"} 3.0' in metrics
        assert 'trackpipe_outbound_attempts_total{kind="webhook"} 9.0' in metrics
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()


class GoneReceiver(Receiver):
    """Answers 410 Gone while ``gone``, else 204."""

    gone = True

    async def _handle(self, request: web.Request) -> web.Response:
        await super()._handle(request)
        return web.Response(status=410 if self.gone else 204)


def _endpoints(base: str) -> list[dict[str, Any]]:
    status, answer = http("GET", f"{base}/api/v1/endpoints", headers=AUTH)
    assert status == 200, answer
    found: list[dict[str, Any]] = answer["endpoints"]
    return found


def test_a_gone_endpoint_is_disabled_until_reenabled(tmp_path: Path) -> None:
    receiver = GoneReceiver(free_port())
    receiver.up()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _run(tmp_path, port)
    try:
        goal = _goal(base, f"http://127.0.0.1:{receiver.port}/gone", "Gone")
        track = f"{base}/api/conversions/track/{goal['token']}"
        body = json.dumps({"value": 1, "currency": "USD", "order_id": "G1"}).encode()
        assert http("POST", track, body)[0] == 200
        (first,) = wait_for("dead by 410", lambda: _list(base, status="dead"))
        assert first["dead_reason"] == "gone" and first["attempts_log"][-1]["status_code"] == 410
        (ep,) = wait_for("the endpoint disabled", lambda: _endpoints(base))
        assert ep["key"] == f"goal:{goal['id']}" and ep["disabled_reason"] == "gone" and ep["disabled_at"]
        conn = sqlite3.connect(tmp_path / "data" / "state.sqlite")
        try:  # kept across restarts
            saved = conn.execute("SELECT key, disabled_reason FROM outbound_endpoints").fetchall()
        finally:
            conn.close()
        assert saved == [(ep["key"], "gone")]

        # while disabled: the next delivery dies without an attempt
        body = json.dumps({"value": 1, "currency": "USD", "order_id": "G2"}).encode()
        assert http("POST", track, body)[0] == 200
        second = wait_for(
            "dead as endpoint_disabled",
            lambda: [d for d in _list(base, status="dead") if d["dead_reason"] == "endpoint_disabled"],
        )[0]
        assert second["attempts_log"][-1]["status_code"] is None
        assert len(receiver.on("/gone")) == 1

        assert http("POST", f"{base}/api/v1/endpoints/nonsense/enable", None, AUTH)[0] == 400
        assert http("POST", f"{base}/api/v1/endpoints/goal:unknown/enable", None, AUTH)[0] == 404
        receiver.gone = False
        status, answer = http("POST", f"{base}/api/v1/endpoints/{ep['key']}/enable", None, AUTH)
        assert status == 200 and answer == {"key": ep["key"], "enabled": True}, answer
        assert _endpoints(base) == []
        status, answer = http(
            "POST", f"{base}/api/v1/deliveries/retry", b'{"goal": "%s"}' % goal["id"].encode(), AUTH
        )
        assert status == 200 and answer["retried"] == 2, answer
        wait_for("both delivered", lambda: len(_list(base, status="delivered")) == 2)
        assert len(receiver.on("/gone")) == 3
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()
