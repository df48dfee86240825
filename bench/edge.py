"""Stage 1, the edge: ``trackpipe edge`` on the real Kafka broker next to a bare aiohttp 204 handler.

Both servers get the same load from a generator in another process (wrk, installed from Debian's packages
when missing, see ``bench/system-deps.sh``; else :mod:`bench.loadgen`): single-event POSTs, then 50-event
batch POSTs. Accepted events per second count only 2xx answers (the edge answers 2xx once Kafka
acknowledged with acks=all).

**Saturation**: each server and body size is driven closed-loop at every concurrency of the profile's
sweep (quick and full: 64, 256, 1,024 connections for 1-event POSTs, 16, 64, 256 for 50-event POSTs); the
best accepted events/s over the sweep is the server's sustained rate, and CPU-seconds per 1,000 events is
the server process's utime + stime (``/proc/<pid>/stat``) over that measured run, divided by its accepted
events. **Latency** is then measured open-loop (``bench.loadgen --rate``, latency from each request's
scheduled time) at a fixed 50% of *our* best rate, on ours and on the bare handler at that same rate.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
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
SYSTEM_DEPS = Path(__file__).resolve().parent / "system-deps.sh"


def ensure_wrk() -> bool:
    """wrk on PATH, installed from Debian's packages by ``bench/system-deps.sh`` when missing (as root)."""
    if shutil.which("wrk"):
        return True
    out = subprocess.run(["bash", str(SYSTEM_DEPS)], capture_output=True, text=True, check=False, timeout=600)
    if out.returncode != 0:
        print(f"[bench] could not install wrk:\n{out.stdout}{out.stderr}", file=sys.stderr, flush=True)
    return shutil.which("wrk") is not None


def choose_generator(wanted: str, profile: Profile) -> str:
    if wanted == "python":
        return "python"
    # wrk runs for whole seconds; the smoke profile's sub-second runs use the Python generator
    if profile.edge_duration_s < 1 and wanted == "auto":
        return "python"
    has_wrk = ensure_wrk()
    if wanted == "wrk" and not has_wrk:
        raise RuntimeError("--loadgen wrk asked for, but wrk is not on PATH (apt-get install wrk)")
    return "wrk" if has_wrk else "python"


def _raise_nofile() -> None:
    """1,024 connections need more descriptors than a default soft limit of 1,024 (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65_536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


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


def _python_load(port: int, bodies: Path, concurrency: int, warmup: float, duration: float, profile: Profile):
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
            str(warmup),
            "--duration",
            str(duration),
            "--max-requests",
            str(profile.edge_max_requests),
        ],
        timeout=warmup + duration + 90,
    )
    return json.loads(out.strip().splitlines()[-1])


def load(
    generator: str,
    port: int,
    bodies: Path,
    events_per_request: int,
    concurrency: int,
    profile: Profile,
    proc: Proc | None = None,
) -> dict[str, Any]:
    """A warm-up run (discarded), then the measured closed-loop run; with ``proc``, the server's CPU-seconds
    over the measured run (``cpu_s``, ``cpu_share``, ``cpu_s_per_1k`` events)."""
    if generator == "wrk":
        _wrk(port, bodies, concurrency, profile.edge_warmup_s, bodies.parent)
    else:
        _python_load(port, bodies, concurrency, 0.0, profile.edge_warmup_s, profile)
    cpu0, t0 = (proc.cpu_seconds() if proc else 0.0), time.monotonic()
    if generator == "wrk":
        result = _wrk(port, bodies, concurrency, profile.edge_duration_s, bodies.parent)
    else:
        result = _python_load(port, bodies, concurrency, 0.0, profile.edge_duration_s, profile)
    wall = time.monotonic() - t0
    result["events_per_request"] = events_per_request
    result["concurrency"] = concurrency
    result["events_per_s"] = result["ok_requests_per_s"] * events_per_request
    if proc is not None:
        cpu = proc.cpu_seconds() - cpu0
        events = result["ok_requests"] * events_per_request
        result["cpu_s"] = cpu
        result["server_cpu_share"] = cpu / wall if wall else 0.0
        result["cpu_s_per_1k"] = cpu / events * 1000 if events else 0.0
    return result


def open_loop(port: int, bodies: Path, events_per_request: int, rate: float, profile: Profile, proc: Proc):
    """Latency at a fixed request rate, open loop (``bench.loadgen --rate``), and the server's CPU."""
    conns = str(profile.edge_open_loop_connections)
    args = ["--port", str(port), "--bodies", str(bodies), "--concurrency", conns, "--rate", f"{rate:.3f}"]
    args += ["--warmup", str(profile.edge_warmup_s), "--duration", str(profile.edge_duration_s)]
    cpu0 = proc.cpu_seconds()
    out = run_module("bench.loadgen", args, timeout=profile.edge_warmup_s + profile.edge_duration_s + 90)
    result = json.loads(out.strip().splitlines()[-1])
    cpu = proc.cpu_seconds() - cpu0  # includes the warm-up: per event over every request of the run
    result["events_per_request"] = events_per_request
    result["events_per_s"] = result["ok_requests_per_s"] * events_per_request
    total = rate * (profile.edge_warmup_s + profile.edge_duration_s) * events_per_request
    result["cpu_s_per_1k"] = cpu / total * 1000 if total else 0.0
    return result


def _sweep(proc: Proc, generator: str, port: int, bodies: Path, epr: int, concs: tuple[int, ...], profile):
    points = [load(generator, port, bodies, epr, c, profile, proc) for c in concs]
    best = max(points, key=lambda p: p["events_per_s"])
    return points, best


def _point(p: dict[str, Any]) -> dict[str, Any]:
    keys = ("concurrency", "events_per_s", "cpu_s_per_1k", "server_cpu_share", "p50_ms", "p99_ms")
    return {k: p.get(k) for k in keys} | {
        "not_2xx": p.get("non_2xx", p.get("requests", 0) - p["ok_requests"])
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0


def bench_edge(servers: Servers, profile: Profile, work: Path, loadgen: str = "auto") -> dict[str, Any]:
    generator = choose_generator(loadgen, profile)
    _raise_nofile()
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

    # ours: the sweeps first (they give the rate of the open-loop runs), then the open-loop runs
    port = free_port()
    edge = Proc("trackpipe.cli", ["edge", "--port", str(port)], work / "edge.log", env)
    try:
        edge.wait_healthy(f"http://127.0.0.1:{port}/healthz")
        ours_points, ours_single = _sweep(edge, generator, port, single, 1, profile.edge_sweep, profile)
        ours_bpoints, ours_batch = _sweep(
            edge, generator, port, batch, BATCH_EVENTS, profile.edge_batch_sweep, profile
        )
        half_rate = 0.5 * ours_single["ok_requests_per_s"]
        half_batch_rate = 0.5 * ours_batch["ok_requests_per_s"]
        ours_half = open_loop(port, single, 1, half_rate, profile, edge)
        ours_batch_half = open_loop(port, batch, BATCH_EVENTS, half_batch_rate, profile, edge)
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
        bare_points, bare_single = _sweep(bare, generator, port, single, 1, profile.edge_sweep, profile)
        bare_bpoints, bare_batch = _sweep(
            bare, generator, port, batch, BATCH_EVENTS, profile.edge_batch_sweep, profile
        )
        bare_half = open_loop(port, single, 1, half_rate, profile, bare)
        bare_batch_half = open_loop(port, batch, BATCH_EVENTS, half_batch_rate, profile, bare)
        bare_rss = bare.peak_rss_mb()
    finally:
        bare.stop()

    saturation = {
        # 1-event POSTs: best accepted events/s over the sweep, and where
        "events_per_s": ours_single["events_per_s"],
        "baseline_events_per_s": bare_single["events_per_s"],
        "ratio": _ratio(ours_single["events_per_s"], bare_single["events_per_s"]),
        "concurrency": ours_single["concurrency"],
        "baseline_concurrency": bare_single["concurrency"],
        # 50-event POSTs
        "batch_events_per_s": ours_batch["events_per_s"],
        "batch_baseline_events_per_s": bare_batch["events_per_s"],
        "batch_ratio": _ratio(ours_batch["events_per_s"], bare_batch["events_per_s"]),
        "batch_concurrency": ours_batch["concurrency"],
        "batch_baseline_concurrency": bare_batch["concurrency"],
        # open loop at 50% of our best request rate, the same rate offered to the bare handler
        "half_rate_per_s": half_rate,
        "p50_ms_at_half": ours_half["p50_ms"],
        "p99_ms_at_half": ours_half["p99_ms"],
        "baseline_p50_ms_at_half": bare_half["p50_ms"],
        "baseline_p99_ms_at_half": bare_half["p99_ms"],
        "batch_half_rate_per_s": half_batch_rate,
        "batch_p50_ms_at_half": ours_batch_half["p50_ms"],
        "batch_p99_ms_at_half": ours_batch_half["p99_ms"],
        "batch_baseline_p50_ms_at_half": bare_batch_half["p50_ms"],
        "batch_baseline_p99_ms_at_half": bare_batch_half["p99_ms"],
        "sweep": {
            "edge_single": [_point(p) for p in ours_points],
            "bare_single": [_point(p) for p in bare_points],
            "edge_batch": [_point(p) for p in ours_bpoints],
            "bare_batch": [_point(p) for p in bare_bpoints],
        },
    }
    return {
        "generator": generator,
        "open_loop_generator": "bench.loadgen --rate",
        "saturation": saturation,
        # CPU-seconds of the server process per 1,000 accepted events, at each one's best sweep point
        "cpu_s_per_1k": ours_single["cpu_s_per_1k"],
        "baseline_cpu_s_per_1k": bare_single["cpu_s_per_1k"],
        "batch_cpu_s_per_1k": ours_batch["cpu_s_per_1k"],
        "batch_baseline_cpu_s_per_1k": bare_batch["cpu_s_per_1k"],
        # the earlier keys, now at the best sweep point (closed loop)
        "events_per_s": ours_single["events_per_s"],
        "baseline_events_per_s": bare_single["events_per_s"],
        "ratio": saturation["ratio"],
        "p50_ms": ours_single["p50_ms"],
        "p99_ms": ours_single["p99_ms"],
        "baseline_p50_ms": bare_single["p50_ms"],
        "baseline_p99_ms": bare_single["p99_ms"],
        "batch_events_per_s": ours_batch["events_per_s"],
        "batch_baseline_events_per_s": bare_batch["events_per_s"],
        "batch_ratio": saturation["batch_ratio"],
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
            "edge_single_half_rate": ours_half,
            "edge_batch_half_rate": ours_batch_half,
            "bare_single_half_rate": bare_half,
            "bare_batch_half_rate": bare_batch_half,
        },
    }
