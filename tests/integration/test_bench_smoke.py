"""The benchmark harness end to end in its smoke profile (a few hundred events): every stage runs against
the real servers and the results file holds every required key as a number. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.keys import REQUIRED, REQUIRED_TEXT, lookup, missing

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke_writes_every_key(tmp_path, kafka_bootstrap, clickhouse_server):
    out = tmp_path / "latest.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--kafka",
            kafka_bootstrap,
            "--clickhouse",
            f"http://{clickhouse_server.host}:{clickhouse_server.http_port}",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, f"bench failed:\n{run.stdout}\n{run.stderr[-6000:]}"
    results = json.loads(out.read_text())
    assert missing(results) == [], results.get("errors")
    for key in REQUIRED:
        assert lookup(results, key) >= 0, key
    assert all(lookup(results, key) for key in REQUIRED_TEXT)
    assert results["profile"] == "smoke" and "errors" not in results
    # every stage really ran: events went through the edge, the worker and into the report's data
    assert lookup(results, "edge.events_per_s") > 0 and lookup(results, "worker.events_per_s") > 0
    # the edge at saturation: a sweep point per server and body size, CPU per event, and answers to the
    # open-loop runs at half our best rate (a generator that got none reports a p99 of 0)
    sweep = lookup(results, "edge.saturation.sweep")
    assert all(sweep[k] for k in ("edge_single", "bare_single", "edge_batch", "bare_batch")), sweep
    assert lookup(results, "edge.saturation.events_per_s") > 0 and lookup(results, "edge.cpu_s_per_1k") > 0
    for server, size in (("edge", "single"), ("bare", "single"), ("edge", "batch"), ("bare", "batch")):
        half = f"{server}_{size}_half_rate"
        got = lookup(results, f"edge.runs.{half}")
        assert got["ok_requests"] > 0 and got["unanswered"] == 0 and got["p99_ms"] > 0, (half, got)
    assert lookup(results, "report.events") == 10_000
    # outbound: every accepted conversion's webhook arrived, also after the receiver was down
    for part in ("outbound", "outbound.spread", "outbound.down"):
        assert lookup(results, f"{part}.conversions") > 0, part
        assert lookup(results, f"{part}.lost") == 0, (part, lookup(results, part))
        assert lookup(results, f"{part}.ids_with_several_bodies") == 0, part
    # alerts: every probe episode's firing webhook arrived, at every capacity point too
    assert lookup(results, "alerts.episodes") > 0 and lookup(results, "alerts.missed") == 0
    points = lookup(results, "alerts.capacity.points")
    assert points and all(p["episodes"] > 0 and p["missed"] == 0 for p in points), points
    assert lookup(results, "alerts.capacity.rules_x_projects") > 0
    assert "| stage | trackpipe | raw baseline |" in run.stdout
