"""Two ``trackpipe edge`` processes against the same Kafka share goals, links and tokens: what is created
through one is usable through the other within seconds, and a new edge reads everything at start."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from tests.integration.test_inputs_edge import ADMIN_KEY, AUTH, REF_GOAL, REF_PVTLNK
from tests.scenario import Proc, free_port, http, run_cli


def wait_status(method: str, url: str, body: dict[str, Any] | None, want: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        status, _ = http(method, url, json.dumps(body).encode() if body is not None else None)
        if status == want:
            return status
        time.sleep(0.2)
    raise AssertionError(f"{method} {url} never answered {want}; last {status}")


def click_status(url: str) -> int:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "t"}), timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_goal_created_on_one_edge_works_on_the_other(tmp_path, kafka_bootstrap, unique_name):
    env = {
        "TRACKPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRACKPIPE_KAFKA_TOPIC": unique_name("events"),
        "TRACKPIPE_WORKER_APP_ID": unique_name("worker"),  # its own stage topics (the edges check them)
        "TRACKPIPE_PARTITIONS": "2",
        "TRACKPIPE_ADMIN_KEY": ADMIN_KEY,
        # reports are not used here; point ClickHouse at a closed port so nothing depends on it
        "TRACKPIPE_CLICKHOUSE_PORT": str(free_port()),
    }
    assert "created" in run_cli(["topics", "create"], env, tmp_path)
    port_a, port_b = free_port(), free_port()
    a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    edge_a = Proc(["edge", "--port", str(port_a)], env, tmp_path / "edge-a.log")
    edge_b: Proc | None = None
    try:
        edge_a.wait_healthy(a)
        status, first = http("POST", a + "/api/v1/conversions/goals", json.dumps(REF_GOAL).encode(), AUTH)
        assert status == 201, first

        # an edge started later reads the configuration topic from the beginning
        edge_b = Proc(["edge", "--port", str(port_b)], env, tmp_path / "edge-b.log")
        edge_b.wait_healthy(b)
        status, got = http("GET", f"{b}/api/v1/conversions/goals/{first['id']}", headers=AUTH)
        assert status == 200 and got["token"] == first["token"]

        # created on A while B runs: B's tail picks it up within seconds
        status, second = http(
            "POST", a + "/api/v1/conversions/goals", json.dumps({"name": "Signup"}).encode(), AUTH
        )
        assert status == 201, second
        wait_status("POST", f"{b}/api/conversions/track/{second['token']}", REF_PVTLNK, 200)
        # a link created on B is clickable on A
        status, link = http(
            "POST", b + "/api/v1/links", json.dumps({"url": "https://shop.example/"}).encode(), AUTH
        )
        assert status == 201, link
        deadline = time.monotonic() + 30
        while click_status(f"{a}/c/{link['id']}") != 302:
            assert time.monotonic() < deadline, "link never reached edge A"
            time.sleep(0.2)
        # deleted on B: the token stops working on A
        status, _ = http("DELETE", f"{b}/api/v1/conversions/goals/{second['id']}", headers=AUTH)
        assert status == 204
        wait_status("POST", f"{a}/api/conversions/track/{second['token']}", REF_PVTLNK, 404)
    except AssertionError as exc:
        tails = f"--- edge A ---\n{edge_a.tail()}"
        if edge_b is not None:
            tails += f"\n--- edge B ---\n{edge_b.tail()}"
        raise AssertionError(f"{exc}\n{tails}") from None
    finally:
        edge_a.stop()
        if edge_b is not None:
            edge_b.stop()
