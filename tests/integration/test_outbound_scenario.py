"""The outbound scenario through ``trackpipe run`` (embedded default) with a real receiver on 127.0.0.1
(issue 13): exactly the expected goal webhooks and S2S postbacks; every delivery after a receiver that was
down comes back; and an allow-list narrowed after a goal was saved stops its deliveries at send time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.integration.test_inputs_edge import ADMIN_KEY, REF_PVTLNK
from tests.integration.test_outbound_embedded import Receiver, _goal, _verified, due_rows, wait_for
from tests.outbound_scenario import check_deliveries, log_settled, send_outbound_scenario
from tests.scenario import Proc, free_port, http


def _run(tmp_path: Path, port: int, log_name: str, **env: str) -> Proc:
    settings = {
        "TRACKPIPE_ADMIN_KEY": ADMIN_KEY,
        "TRACKPIPE_OUTBOUND__ALLOW_NETWORKS": "127.0.0.0/8",
        "TRACKPIPE_OUTBOUND__RETRY_SCHEDULE_S": ",".join(["0"] + ["0.5"] * 49),  # ~25 s of fast retries
        "TRACKPIPE_OUTBOUND__TIMEOUT_S": "5",
        **env,
    }
    args = ["run", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    proc = Proc(args, settings, tmp_path / log_name)
    proc.wait_healthy(f"http://127.0.0.1:{port}")
    return proc


def test_scenario_yields_exactly_the_expected_deliveries(tmp_path):
    receiver = Receiver(free_port())
    receiver.up()
    port = free_port()
    proc = _run(tmp_path, port, "run.log")
    try:
        base = f"http://127.0.0.1:{port}"
        expected = send_outbound_scenario(base, receiver)
        bodies = check_deliveries(receiver, expected, log_settled(base, receiver))
        assert len(bodies) == len(expected.hooks) == 10 and len(expected.postbacks) == 5
        # the embedded state agrees: one row per delivery (+ the sentinel's), every one delivered once
        rows = due_rows(tmp_path / "data")
        assert len(rows) == len(expected.hooks) + len(expected.postbacks) + 1
        assert all(r["status"] == "delivered" and r["attempts"] == 1 for r in rows), rows
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()


def test_receiver_down_then_up_gets_every_delivery_once_per_id(tmp_path):
    receiver = Receiver(free_port())  # port closed: every attempt fails to connect
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    proc = _run(tmp_path, port, "run.log")
    orders = [f"DOWN-{i}" for i in range(10)]
    try:
        goal = _goal(base, f"http://127.0.0.1:{receiver.port}/hook", "Down")
        for order in orders:
            body = json.dumps({"value": 10, "currency": "USD", "order_id": order}).encode()
            assert http("POST", f"{base}/api/conversions/track/{goal['token']}", body)[0] == 200
        wait_for(
            "every delivery failing at least twice",
            lambda: (r := due_rows(data)) and len(r) == len(orders) and all(x["attempts"] >= 2 for x in r),
        )
        assert all(r["status"] == "failed" for r in due_rows(data))
        time.sleep(2)  # down for a while
        receiver.up()

        def all_arrived() -> dict[str, set[bytes]] | None:
            by_id: dict[str, set[bytes]] = {}
            for h, b in receiver.on("/hook"):
                _verified(goal, h, b)
                by_id.setdefault(h["webhook-id"], set()).add(b)
            got = {json.loads(b)["order_id"] for bodies in by_id.values() for b in bodies}
            return by_id if got == set(orders) else None

        by_id = wait_for("every delivery after the receiver came back", all_arrived)
        assert len(by_id) == len(orders) and all(len(bodies) == 1 for bodies in by_id.values())
        rows = wait_for(
            "every delivery marked delivered",
            lambda: (r := due_rows(data)) and all(x["status"] == "delivered" for x in r) and r,
        )
        assert {r["id"] for r in rows} == set(by_id)
        assert all(r["attempts"] >= 3 and r["last_status"] == 204 for r in rows)
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()


def test_allow_list_narrowed_after_save_refuses_at_delivery(tmp_path):
    """The goal's URL passed the allow-list when it was saved; after a restart with a narrower
    allow-list, its deliveries are refused at send time and the receiver gets nothing. A redirect
    answered by an allowed receiver is not followed either."""
    receiver = Receiver(free_port())
    receiver.up()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    proc = _run(tmp_path, port, "run1.log")
    try:
        goal = _goal(base, f"http://127.0.0.1:{receiver.port}/hook", "Narrowed")
        # a 302 to a private address: one failed attempt per schedule step, the Location never contacted
        redirect = _goal(base, f"http://127.0.0.1:{receiver.port}/redirect", "Redirected")
        receiver.redirect = {"/redirect": "http://10.0.0.1/hook"}
    finally:
        assert proc.stop() == 0, proc.tail()

    proc = _run(tmp_path, port, "run2.log", TRACKPIPE_OUTBOUND__ALLOW_NETWORKS="10.0.0.0/8")
    try:
        body = json.dumps(REF_PVTLNK).encode()
        assert http("POST", f"{base}/api/conversions/track/{goal['token']}", body)[0] == 200

        def refused() -> dict[str, Any] | None:
            rows = [r for r in due_rows(data) if r["goal_id"] == goal["id"]]
            return rows[0] if rows and rows[0]["status"] == "dead" else None

        row = wait_for("the delivery dead as refused", refused)
        assert row["dead_reason"] == "refused" and row["attempts"] == 1 and row["last_status"] is None
        assert "loopback" in (row["last_error"] or "") or "127.0.0.1" in (row["last_error"] or ""), row
    finally:
        assert proc.stop() == 0, proc.tail()

    proc = _run(tmp_path, port, "run3.log")  # loopback allowed again: the redirect goal's turn
    try:
        body = json.dumps({"value": 3, "currency": "USD", "order_id": "REDIR-1"}).encode()
        assert http("POST", f"{base}/api/conversions/track/{redirect['token']}", body)[0] == 200

        def failing() -> dict[str, Any] | None:
            rows = [r for r in due_rows(data) if r["goal_id"] == redirect["id"]]
            return rows[0] if rows and rows[0]["attempts"] >= 2 else None

        row = wait_for("the redirected delivery failing", failing)
        assert row["status"] in ("failed", "dead") and row["last_status"] == 302, row
        with receiver.lock:
            paths = [p for _, p, _ in receiver.calls]
        assert set(paths) == {"/redirect"}, paths  # the dead goal's /hook never; no Location followed
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()
