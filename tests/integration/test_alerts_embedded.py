"""Alert rules in ``trackpipe run`` (issue 14): a threshold, a spike and an absence rule go firing and
resolved at the expected points, each transition reaches the receiver once (signed with the rule's
secret) and the Slack-compatible channel, and is published on the public stream."""

from __future__ import annotations

import signal

from tests.alerts_scenario import (
    ALERT_PATH,
    alert_hooks,
    check_rule_statuses,
    fire_one_episode,
    run_alerts_scenario,
)
from tests.integration.test_outbound_embedded import Receiver, _run, due_rows, wait_for
from tests.integration.test_stream_embedded import BEARER
from tests.scenario import free_port
from tests.stream_client import read_events


def test_threshold_spike_and_absence_rules_fire_and_resolve(tmp_path):
    receiver = Receiver(free_port())
    receiver.up()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _run(tmp_path, port, "run.log")
    try:
        done = run_alerts_scenario(base, receiver)
        project = done["goal"]["project"]
        # the same transitions on the public stream, as CloudEvents
        url = f"{base}/api/v1/stream?project={project}&from=earliest"
        alerts = read_events(
            f"{url}&types=com.trackpipe.alert.firing,com.trackpipe.alert.resolved", BEARER, 7
        )
        assert sorted(e.data["id"] for e in alerts) == sorted(h["transition_id"] for h in done["hooks"])
        assert all(e.data["subject"] == e.data["data"]["rule"]["id"] for e in alerts)
        check_rule_statuses(base, done)
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()


def test_sigkill_mid_episode_repeats_nothing_and_loses_nothing(tmp_path):
    receiver = Receiver(free_port())
    receiver.up()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    proc = _run(tmp_path, port, "run1.log")
    try:
        secrets, firing = fire_one_episode(base, receiver)
        # its delivery is recorded as delivered: the kill comes mid-episode, with the episode firing
        wait_for(
            "the firing delivery recorded",
            lambda: any(
                r["id"] == firing["transition_id"] and r["status"] == "delivered" for r in due_rows(data)
            ),
        )
    finally:
        proc.stop(signal.SIGKILL)

    proc = _run(tmp_path, port, "run2.log")
    try:
        hooks = wait_for(
            "resolved after the restart", lambda: (h := alert_hooks(receiver, secrets))[1:] and h, 60
        )
        assert [h["state"] for h in hooks] == ["firing", "resolved"]
        assert len({h["transition_id"] for h in hooks}) == 2
        assert hooks[1]["episode_id"] == hooks[0]["episode_id"]  # the same episode, resumed
        assert len(receiver.on(ALERT_PATH)) == 2  # nothing repeated
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()
