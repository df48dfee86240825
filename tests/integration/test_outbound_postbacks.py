"""Traffic-source S2S postbacks from ``trackpipe run`` (embedded default) to a real receiver on
127.0.0.1 (issue 13): a click carrying the source's click id, a conversion attributed to it, and the
link's template rendered and sent once per conversion and status, planned with the batch like goal
webhooks; ``disable_postbacks`` stops the S2S postback and not the goal webhook."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.integration.test_config_embedded import _redirect_of
from tests.integration.test_inputs_edge import AUTH
from tests.integration.test_outbound_embedded import Receiver, _goal, _run, _verified, due_rows, wait_for
from tests.scenario import free_port, http


def test_s2s_postback_once_mapped_and_disabled(tmp_path):
    receiver = Receiver(free_port())
    receiver.up()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    proc = _run(tmp_path, port, "run.log")
    try:
        goal = _goal(base, f"http://127.0.0.1:{receiver.port}/hook", "Sales")
        template = (
            f"http://127.0.0.1:{receiver.port}/pb?subid={{external_id}}&status={{status}}&payout={{payout}}"
        )
        spec = {
            "url": "https://shop.example/offer",
            "goal": goal["id"],
            "external_click_param": "clickid",
            "postback_template": template,
            "postback_status_map": "sale=bill",
        }
        status, link = http("POST", base + "/api/v1/links", json.dumps(spec).encode(), AUTH)
        assert status == 201, link

        def click(external: str) -> str:
            location = _redirect_of(f"{base}/c/{link['id']}?clickid={external}")
            return parse_qs(urlsplit(location).query)["click_id"][0]

        def hooks(order: str) -> list[dict[str, Any]]:
            got = [_verified(goal, h, b) for h, b in receiver.on("/hook")]
            return [e for e in got if e["order_id"] == order]

        def postbacks() -> list[tuple[str, dict[str, list[str]]]]:
            with receiver.lock:
                calls = list(receiver.calls)
            return [(m, parse_qs(q)) for m, p, q in calls if p == "/pb"]

        hit = click("XYZ")
        assert http("GET", f"{base}/pb/?hit={hit}&tx=T-1&rev=20")[0] == 200
        [(method, query)] = wait_for("the S2S postback", postbacks)
        assert method == "GET"
        assert query == {"subid": ["XYZ"], "status": ["bill"], "payout": ["20"]}
        wait_for("its goal webhook", lambda: hooks("T-1"))

        # the same conversion again, then another one without postbacks: once the second one's goal
        # webhook arrives, both batches are committed (planning shares their transaction)
        assert http("GET", f"{base}/pb/?hit={hit}&tx=T-1&rev=20")[0] == 200
        other = click("ABC")
        assert http("GET", f"{base}/pb/?hit={other}&tx=T-2&rev=5&disable_postbacks=true")[0] == 200
        [event] = wait_for("the goal webhook without postbacks", lambda: hooks("T-2"))
        assert event["disable_postbacks"] is True and event["event"] == "conversion.tracked"
        planned = [r for r in due_rows(data) if r["event"] == "postback"]
        assert len(planned) == 1 and planned[0]["link_id"] == link["id"] and planned[0]["method"] == "GET"
        assert planned[0]["id"].startswith("pb_")

        def delivered() -> dict[str, Any] | None:
            rows = [r for r in due_rows(data) if r["event"] == "postback"]
            return rows[0] if rows and rows[0]["status"] == "delivered" else None

        row = wait_for("the postback delivered", delivered)
        assert row["attempts"] == 1 and row["last_status"] == 204
        assert len(postbacks()) == 1 and len(hooks("T-1")) == 1
        unsigned = [h for p, h, _ in receiver.requests if p == "/pb"]
        assert all("webhook-signature" not in {k.lower() for k in h} for h in unsigned)
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()
