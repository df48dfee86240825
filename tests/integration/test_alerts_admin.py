"""Alert rules' admin API and CLI on ``trackpipe run`` (issue 14): rules are configuration (the file store,
beside goals and links), each with a webhook signing secret shown once; bad input is a 400 naming the
field, an unknown id a 404; channel URLs pass the SSRF guard (no allow-list here: private addresses are
refused); the rules survive a restart; ``trackpipe alerts`` lists, creates, shows, snoozes, deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.test_inputs_edge import ADMIN_KEY, AUTH
from tests.scenario import Proc, free_port, http

HOOK = "https://hooks.example.com/alerts"
SLACK = "https://hooks.slack.example.com/services/T0/B0/x"


def _run(tmp_path: Path, port: int) -> Proc:
    env = {"TRACKPIPE_ADMIN_KEY": ADMIN_KEY}  # no TRACKPIPE_OUTBOUND__ALLOW_NETWORKS: nothing private
    proc = Proc(["run", "--port", str(port), "--data-dir", str(tmp_path / "data")], env, tmp_path / "run.log")
    proc.wait_healthy(f"http://127.0.0.1:{port}")
    return proc


def _rule(answer: dict[str, Any]) -> dict[str, Any]:
    """A rule as answered, without its live ``status``."""
    return {k: v for k, v in answer.items() if k != "status"}


def _call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    raw = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return http(method, url, raw, {**AUTH, "Content-Type": "application/json"})


def _cli(
    args: list[str], tmp_path: Path, base: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trackpipe.cli", "alerts", *args, "--url", base],
        env={**os.environ, "TRACKPIPE_ADMIN_KEY": ADMIN_KEY},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def _bad(method: str, url: str, body: Any, field: str) -> None:
    status, answer = _call(method, url, body)
    assert status == 400, (body, status, answer)
    assert field in answer["error"]["message"], (body, answer)


def test_alert_rules_admin_api_and_cli(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    alerts = f"{base}/api/v1/alerts"
    proc = _run(tmp_path, port)
    try:
        status, goal = _call("POST", f"{base}/api/v1/conversions/goals", {"name": "Sale", "project": "shop"})
        assert status == 201, goal
        status, other = _call(
            "POST", f"{base}/api/v1/conversions/goals", {"name": "Other"}
        )  # project default
        assert status == 201, other

        # create: the secret is in this answer only
        spec = {
            "project": "shop",
            "name": "Few sales",
            "kind": "threshold",
            "metric": "conversions",
            "op": "below",
            "value": 3,
            "window_s": 600,
            "scope": {"goal_id": goal["id"]},
            "channels": {"webhook_url": HOOK, "slack_url": SLACK},
        }
        status, created = _call("POST", alerts, spec)
        assert status == 201, created
        secret = created.pop("signing_secret")
        assert secret.startswith("whsec_") and "signing_keys" not in created and "state" not in created
        rid = created["id"]
        assert created["scope"] == {"goal_id": goal["id"], "link_id": None, "campaign": None}
        assert created["pending_s"] == 0 and created["no_data"] == "ok" and created["enabled"] is True
        assert created["channels"] == {"webhook_url": HOOK, "slack_url": SLACK}
        status, wrapped = _call(
            "POST", alerts, {"alert": {"name": "Spike", "kind": "spike", "min_count": 5, "factor": 3}}
        )
        assert status == 201 and wrapped["project"] == "default", wrapped

        # read: list (by project), one; never the secret
        status, listed = _call("GET", alerts)
        assert status == 200 and [r["id"] for r in listed["alerts"]] == [wrapped["id"], rid]  # by project
        shop = _call("GET", f"{alerts}?project=shop")[1]["alerts"]
        assert [_rule(r) for r in shop] == [created]
        assert _call("GET", f"{alerts}?project=none")[1] == {"alerts": []}
        status, one = _call("GET", f"{alerts}/{rid}")
        assert status == 200 and _rule(one) == created
        # evaluated by this process (embedded): where it stands, nothing happened yet
        assert one["status"]["state"] == "normal" and one["status"]["transitions"] == []
        assert secret not in json.dumps(listed)

        # patch: validated as a whole
        status, patched = _call("PATCH", f"{alerts}/{rid}", {"value": 5, "pending_s": 120})
        assert status == 200 and patched["value"] == 5 and patched["pending_s"] == 120, patched
        assert (
            patched["updated_at"] > created["updated_at"] and patched["created_at"] == created["created_at"]
        )
        status, spike = _call(
            "PATCH",
            f"{alerts}/{rid}",
            {"alert": {"kind": "spike", "op": None, "value": None, "min_count": 4, "factor": 2}},
        )
        assert status == 200 and (spike["kind"], spike["op"], spike["min_count"]) == ("spike", None, 4), spike
        assert _call("PATCH", f"{alerts}/{rid}", {"channels": {"webhook_url": None}})[1]["channels"] == {
            "webhook_url": None,
            "slack_url": None,
        }
        for body, field in (
            ({"kind": "threshold"}, "op"),  # a threshold rule requires op and value
            ({"op": "above"}, "op"),  # not used by a spike rule
            ({"name": None}, "name"),
            ({"window_s": -1}, "window_s"),
            ({"window_s": "long"}, "window_s"),
            ({"project": "other"}, "project"),  # fixed
            ({"colour": "red"}, "colour"),
            ({"factor": "nan"}, "factor"),
            ({"min_count": 10**12}, "min_count"),
            ({"scope": {"goal_id": other["id"]}}, "scope.goal_id"),  # another project's goal
            ({"scope": {"link_id": "nope"}}, "scope.link_id"),
            ({"channels": {"webhook_url": "http://10.1.2.3/hook"}}, "channels.webhook_url"),
            ({"channels": {"slack_url": "http://127.0.0.1:9/"}}, "channels.slack_url"),
            ({"channels": {"webhook_url": "ftp://hooks.example.com/"}}, "channels.webhook_url"),
            ({"snoozed_until": "2030-01-01T00:00:00"}, "snoozed_until"),  # no zone
            ({"snoozed_until": "someday"}, "snoozed_until"),
            (b"[1]", ""),
            (b"{", ""),
        ):
            _bad("PATCH", f"{alerts}/{rid}", body, field)
        assert _call("GET", f"{alerts}/{rid}")[1]["kind"] == "spike"  # nothing of the above was stored

        # create: bad input is a 400 naming the field; the SSRF guard without an allow-list
        for body, field in (
            ({**spec, "channels": {"webhook_url": "http://10.0.0.5/hook"}}, "channels.webhook_url"),
            ({**spec, "channels": {"webhook_url": "http://localhost:8080/"}}, "channels.webhook_url"),
            ({**spec, "channels": {"slack_url": "http://[::1]/"}}, "channels.slack_url"),
            ({k: v for k, v in spec.items() if k != "name"}, "name"),
            ({**spec, "kind": "sometimes"}, "kind"),
            ({**spec, "value": None}, "value"),
            (
                {**spec, "kind": "absence", "op": None, "value": None, "absence_s": 600, "scope": {}},
                "goal_id",
            ),
            ({**spec, "project": "bad project"}, "project"),
            ({**spec, "scope": {"goal_id": "nope"}}, "scope.goal_id"),
            ({**spec, "value": "inf"}, "value"),
            ({**spec, "extra": 1}, "extra"),
        ):
            _bad("POST", alerts, body, field)

        # snooze
        until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
        status, snoozed = _call("PATCH", f"{alerts}/{rid}", {"snoozed_until": until.isoformat()})
        assert status == 200 and datetime.fromisoformat(snoozed["snoozed_until"]) == until, snoozed
        status, unsnoozed = _call("PATCH", f"{alerts}/{rid}", {"snoozed_until": None})
        assert status == 200 and unsnoozed["snoozed_until"] is None

        # rotate: a new secret, shown once; the previous one signs for the grace period
        status, rotated = _call("POST", f"{alerts}/{rid}/secret/rotate")
        assert status == 200 and rotated["alert_id"] == rid, rotated
        assert rotated["signing_secret"].startswith("whsec_") and rotated["signing_secret"] != secret
        assert datetime.fromisoformat(rotated["previous_expires_at"]) > datetime.now(UTC)
        assert rotated["signing_secret"] not in json.dumps(_call("GET", alerts)[1])
        assert _call("POST", f"{alerts}/{rid}/secret/rotate?x=1")[0] == 400

        # unknown ids, and the admin key
        for method in ("GET", "PATCH", "DELETE"):
            status, answer = _call(method, f"{alerts}/nope", {"name": "x"} if method == "PATCH" else None)
            assert status == 404 and answer["error"]["code"] == "unknown_alert", (method, answer)
        assert _call("POST", f"{alerts}/nope/secret/rotate")[0] == 404
        assert http("GET", alerts)[0] == 401
        assert _call("GET", f"{alerts}?colour=red")[0] == 400

        # the CLI
        listed_cli = _cli(["list"], tmp_path, base)
        assert listed_cli.returncode == 0, listed_cli.stderr
        assert (
            rid in listed_cli.stdout and "2 rules" in listed_cli.stdout and "Few sales" in listed_cli.stdout
        )
        only = _cli(["list", "--project", "shop", "--json"], tmp_path, base)
        assert [r["id"] for r in json.loads(only.stdout)["alerts"]] == [rid]
        made = _cli(
            ["create", "--name", "No sales", "--kind", "absence", "--project", "shop", "--goal", goal["id"],
             "--absence", "30m", "--pending", "2m", "--webhook-url", HOOK],
            tmp_path,
            base,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        absence = json.loads(made.stdout)
        assert absence["signing_secret"].startswith("whsec_") and absence["pending_s"] == 120
        assert absence["absence_s"] == 1800
        assert absence["scope"]["goal_id"] == goal["id"] and absence["channels"]["webhook_url"] == HOOK
        from_json = _cli(
            ["create", "--json", "-", "--name", "Revenue up"],
            tmp_path,
            base,
            stdin=json.dumps({"name": "x", "kind": "change", "metric": "revenue", "op": "above", "value": 30,
                              "change_mode": "percent", "window": 1}),
        )  # fmt: skip
        assert from_json.returncode == 1 and "window" in from_json.stderr  # the server names the field
        from_json = _cli(
            ["create", "--json", "-", "--name", "Revenue up", "--window", "1h"],
            tmp_path,
            base,
            stdin=json.dumps({"name": "x", "kind": "change", "metric": "revenue", "op": "above", "value": 30,
                              "change_mode": "percent"}),
        )  # fmt: skip
        assert from_json.returncode == 0, from_json.stderr
        change = json.loads(from_json.stdout)
        assert (change["name"], change["window_s"], change["project"]) == ("Revenue up", 3600, "default")
        shown = _cli(["show", absence["id"]], tmp_path, base)
        assert shown.returncode == 0 and json.loads(shown.stdout)["name"] == "No sales"
        assert "signing_secret" not in shown.stdout
        snooze = _cli(["snooze", absence["id"], "--for", "2h"], tmp_path, base)
        assert snooze.returncode == 0 and "snoozed until" in snooze.stdout, snooze.stderr
        assert _call("GET", f"{alerts}/{absence['id']}")[1]["snoozed_until"] is not None
        clear = _cli(["snooze", absence["id"], "--clear"], tmp_path, base)
        assert clear.returncode == 0 and "not snoozed" in clear.stdout, clear.stderr
        assert (
            _cli(["snooze", absence["id"], "--until", "2030-01-01T00:00:00"], tmp_path, base).returncode == 1
        )
        deleted = _cli(["delete", change["id"]], tmp_path, base)
        assert deleted.returncode == 0 and f"deleted {change['id']}" in deleted.stdout, deleted.stderr
        missing = _cli(["show", change["id"]], tmp_path, base)
        assert missing.returncode == 1 and "404" in missing.stderr

        # delete over the API
        assert http("DELETE", f"{alerts}/{wrapped['id']}", headers=AUTH) == (204, None)
        assert _call("GET", f"{alerts}/{wrapped['id']}")[0] == 404
        assert _call("DELETE", f"{alerts}/{wrapped['id']}")[0] == 404
        before = _call("GET", alerts)[1]
    finally:
        proc.stop()

    # rules are configuration: a restart reads them back from the file store
    proc = _run(tmp_path, port)
    try:
        assert _call("GET", alerts)[1] == before
        assert [r["id"] for r in before["alerts"]] == [rid, absence["id"]]
        assert (tmp_path / "data" / "config.log").read_bytes().count(b'"k":"alert/') >= 5
    finally:
        proc.stop()
