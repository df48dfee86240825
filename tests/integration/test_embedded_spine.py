"""`trackpipe run` (embedded default) end to end: reference traffic in, correct Top-5 out, across restarts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from tests.scenario import EXPECTED_ROWS, LEGACY_TX, Proc, free_port, http, send_scenario, wait_report


def _start(tmp_path, port):
    proc = Proc(["run", "--port", str(port), "--data-dir", str(tmp_path / "data")], {}, tmp_path / "run.log")
    proc.wait_healthy(f"http://127.0.0.1:{port}")
    return proc


def test_embedded_reference_scenario_survives_restarts(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port)
    try:
        send_scenario(base)
        report = wait_report(base, "12345", EXPECTED_ROWS)
        assert report["visitors"] == 2
        # the CLI prints the same report
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "trackpipe.cli",
                "report",
                "top-events",
                "--project",
                "12345",
                "--url",
                base,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert json.loads(out.stdout)["rows"] == EXPECTED_ROWS
    finally:
        assert proc.stop() == 0, proc.tail()

    # clean restart: the numbers are unchanged (nothing lost, nothing counted twice)
    proc = _start(tmp_path, port)
    try:
        assert wait_report(base, "12345", EXPECTED_ROWS)["visitors"] == 2
        # the duplicate transaction is still a duplicate after the restart
        assert http("GET", base + LEGACY_TX)[0] == 200
        status, body = http(
            "POST",
            base + "/track",
            json.dumps(
                {
                    "cid": "12345",
                    "pid": "12345",
                    "vid": "late-visitor",
                    "ev": [{"evt": "hitGoal", "goals": [777]}],
                }
            ).encode(),
        )
        assert status == 200, body
        rows = [
            dict(EXPECTED_ROWS[0], conversion_rate=round(1 / 3, 6)),
            dict(EXPECTED_ROWS[1], conversions=2, converters=2, conversion_rate=round(2 / 3, 6)),
        ]
        wait_report(base, "12345", rows)
        # crash right after the 2xx: an accepted event must survive a SIGKILL
        status, _ = http(
            "GET", base + "/track?cid=12345&pid=12345&vid=killed&ev[0][evt]=hitGoal&ev[0][goals][]=888"
        )
        assert status == 200
    finally:
        proc.stop(signal.SIGKILL)

    rows = [
        dict(EXPECTED_ROWS[0], conversion_rate=0.25),
        dict(EXPECTED_ROWS[1], conversions=2, converters=2, conversion_rate=0.5),
        {"goal_id": "888", "conversions": 1, "converters": 1, "conversion_rate": 0.25, "revenue": 0.0},
    ]
    proc = _start(tmp_path, port)
    try:
        assert wait_report(base, "12345", rows)["visitors"] == 4
    finally:
        proc.stop()
