"""Stage 1, the edge: ``trackpipe edge`` on the real Kafka broker next to a bare aiohttp 204 handler.

Both servers get the same load from a generator in another process (wrk when installed, else
:mod:`bench.loadgen`): single-event POSTs, then 50-event batch POSTs. Accepted events per second count
only 2xx answers (the edge answers 2xx once Kafka acknowledged with acks=all).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench import stream
from bench.kafka_topics import create_topics
from bench.procs import Proc, free_port, run_module
from bench.profiles import Profile
from bench.servers import Servers

WRK_SCRIPT = """
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "trackpipe-bench"
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

BATCH_EVENTS = 50


def choose_generator(wanted: str, profile: Profile) -> str:
    if wanted == "python":
        return "python"
    has_wrk = shutil.which("wrk") is not None
    if wanted == "wrk" and not has_wrk:
        raise RuntimeError("--loadgen wrk asked for, but wrk is not on PATH (apt-get install wrk)")
    # wrk runs for whole seconds; the smoke profile's sub-second runs use the Python generator
    return "wrk" if has_wrk and profile.edge_duration_s >= 1 else "python"


def _wrk(port: int, bodies: Path, concurrency: int, seconds: float, work: Path) -> dict[str, Any]:
    script = work / "bench.lua"
    script.write_text(WRK_SCRIPT)
    cmd = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/track",
    ]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        env={"BENCH_BODIES": str(bodies), "PATH": "/usr/bin:/bin:/usr/local/bin"},
        check=False,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    window = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["non2xx"]
    return {
        "tool": "wrk",
        "requests": raw["requests"],
        "ok_requests": ok,
        "window_s": window,
        "ok_requests_per_s": ok / window if window else 0.0,
        "non_2xx": raw["non2xx"],
        "socket_errors": raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"],
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


def load(
    generator: str, port: int, bodies: Path, events_per_request: int, concurrency: int, profile: Profile
) -> dict[str, Any]:
    if generator == "wrk":
        work = bodies.parent
        _wrk(port, bodies, concurrency, profile.edge_warmup_s, work)  # warm-up, discarded
        result = _wrk(port, bodies, concurrency, profile.edge_duration_s, work)
    else:
        out = run_module(
            "bench.loadgen",
            [
                "--port",
                str(port),
                "--bodies",
                str(bodies),
                "--concurrency",
                str(concurrency),
                "--warmup",
                str(profile.edge_warmup_s),
                "--duration",
                str(profile.edge_duration_s),
                "--max-requests",
                str(profile.edge_max_requests),
            ],
            timeout=profile.edge_warmup_s + profile.edge_duration_s + 90,
        )
        result = json.loads(out.strip().splitlines()[-1])
    result["events_per_request"] = events_per_request
    result["concurrency"] = concurrency
    result["events_per_s"] = result["ok_requests_per_s"] * events_per_request
    return result


def _measure(proc: Proc, generator: str, port: int, bodies: Path, epr: int, conc: int, profile: Profile):
    cpu0, t0 = proc.cpu_seconds(), time.monotonic()
    result = load(generator, port, bodies, epr, conc, profile)
    result["server_cpu_share"] = (proc.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    return result


def bench_edge(servers: Servers, profile: Profile, work: Path, loadgen: str = "auto") -> dict[str, Any]:
    generator = choose_generator(loadgen, profile)
    single = work / "single.jsonl"
    single.write_bytes(b"\n".join(stream.bodies(2000, 1, seed=61)) + b"\n")
    batch = work / "batch.jsonl"
    batch.write_bytes(b"\n".join(stream.bodies(200, BATCH_EVENTS, seed=62)) + b"\n")

    topic = f"bench-edge-{uuid.uuid4().hex[:10]}"
    env = {
        "TRACKPIPE_KAFKA_BOOTSTRAP": servers.kafka,
        "TRACKPIPE_KAFKA_TOPIC": topic,
        "TRACKPIPE_PARTITIONS": "4",
        "TRACKPIPE_CLICKHOUSE_HOST": servers.clickhouse_host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(servers.clickhouse_port),
    }
    create_topics(servers.kafka, topic, 4)

    port = free_port()
    edge = Proc("trackpipe.cli", ["edge", "--port", str(port)], work / "edge.log", env)
    try:
        edge.wait_healthy(f"http://127.0.0.1:{port}/healthz")
        ours_single = _measure(edge, generator, port, single, 1, profile.edge_concurrency, profile)
        ours_batch = _measure(
            edge, generator, port, batch, BATCH_EVENTS, profile.edge_batch_concurrency, profile
        )
        peak_rss = edge.peak_rss_mb()
    except BaseException as exc:
        raise RuntimeError(f"edge stage failed: {exc}\n--- edge log ---\n{edge.tail()}") from exc
    finally:
        edge.stop()

    port = free_port()
    loop = os.environ.get("TRACKPIPE_EDGE__EVENT_LOOP", "uvloop")  # the edge's loop: compare like with like
    bare = Proc("bench.bare_server", ["--port", str(port), "--loop", loop], work / "bare.log")
    try:
        bare.wait_healthy(f"http://127.0.0.1:{port}/healthz")
        bare_single = _measure(bare, generator, port, single, 1, profile.edge_concurrency, profile)
        bare_batch = _measure(
            bare, generator, port, batch, BATCH_EVENTS, profile.edge_batch_concurrency, profile
        )
        bare_rss = bare.peak_rss_mb()
    finally:
        bare.stop()

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    return {
        "generator": generator,
        "events_per_s": ours_single["events_per_s"],
        "baseline_events_per_s": bare_single["events_per_s"],
        "ratio": ratio(ours_single["events_per_s"], bare_single["events_per_s"]),
        "p50_ms": ours_single["p50_ms"],
        "p99_ms": ours_single["p99_ms"],
        "baseline_p50_ms": bare_single["p50_ms"],
        "baseline_p99_ms": bare_single["p99_ms"],
        "batch_events_per_s": ours_batch["events_per_s"],
        "batch_baseline_events_per_s": bare_batch["events_per_s"],
        "batch_ratio": ratio(ours_batch["events_per_s"], bare_batch["events_per_s"]),
        "batch_p50_ms": ours_batch["p50_ms"],
        "batch_p99_ms": ours_batch["p99_ms"],
        "batch_baseline_p50_ms": bare_batch["p50_ms"],
        "batch_baseline_p99_ms": bare_batch["p99_ms"],
        "peak_rss_mb": peak_rss,
        "baseline_peak_rss_mb": bare_rss,
        "runs": {
            "edge_single": ours_single,
            "edge_batch": ours_batch,
            "bare_single": bare_single,
            "bare_batch": bare_batch,
        },
    }
