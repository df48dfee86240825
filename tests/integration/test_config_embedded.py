"""``trackpipe run`` (embedded default) keeps goals and links in its data dir: created once, they work
after a restart, and a click and its postback are accepted end to end."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.integration.test_inputs_edge import ADMIN_KEY, AUTH, REF_GOAL, REF_PVTLNK
from tests.scenario import Proc, free_port, http


def _redirect_of(url: str) -> str:
    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(Keep)
    try:
        opener.open(urllib.request.Request(url, headers={"User-Agent": "t"}), timeout=30)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302, exc.code
        return str(exc.headers["Location"])
    raise AssertionError("no redirect")


def test_embedded_config_survives_restart(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["run", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    env = {"TRACKPIPE_ADMIN_KEY": ADMIN_KEY}
    proc = Proc(args, env, tmp_path / "run1.log")
    try:
        proc.wait_healthy(base)
        status, goal = http("POST", base + "/api/v1/conversions/goals", json.dumps(REF_GOAL).encode(), AUTH)
        assert status == 201, goal
        body = json.dumps({"url": "https://shop.example/", "goal": goal["id"]}).encode()
        status, link = http("POST", base + "/api/v1/links", body, AUTH)
        assert status == 201, link
    finally:
        assert proc.stop() == 0, proc.tail()

    proc = Proc(args, env, tmp_path / "run2.log")
    try:
        proc.wait_healthy(base)
        status, answer = http(
            "POST", f"{base}/api/conversions/track/{goal['token']}", json.dumps(REF_PVTLNK).encode()
        )
        assert status == 200, answer
        hit = parse_qs(urlsplit(_redirect_of(f"{base}/c/{link['id']}")).query)["click_id"][0]
        status, answer = http("GET", f"{base}/pb/?hit={hit}&tx=T-1&rev=10")
        assert status == 200, answer
    finally:
        assert proc.stop() == 0, proc.tail()
    assert (tmp_path / "data" / "config.log").stat().st_size > 0
