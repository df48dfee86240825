"""Alert rules in ``trackpipe run`` (issue 14): a threshold, a spike and an absence rule go firing and
resolved at the expected points, each transition reaches the receiver once (signed with the rule's
secret) and the Slack-compatible channel, and is published on the public stream."""

from __future__ import annotations

from tests.alerts_scenario import run_alerts_scenario
from tests.integration.test_outbound_embedded import Receiver, _run
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
    finally:
        assert proc.stop() == 0, proc.tail()
        receiver.close()
