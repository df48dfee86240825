"""The embedded edge's latency while its runner works through a backlog (issue 16 item 6).

``<data>/log`` is preloaded with ``e2e_backlog_events`` events of the recorded stream (envelope records as
the edge's accumulator makes them), then ``trackpipe run`` starts on that directory: its runner begins to
process the backlog at once. Meanwhile an open-loop load of 1-event ``/track`` requests
(``e2e_backlog_rate_per_s``, :mod:`bench.loadgen`) measures the edge's latency (``backlog``); once the
runner's committed offset (``consumer.offset``) has passed the backlog, the same load runs again
(``idle``). ``backlog_throughout_window`` says whether the backlog was still being processed when the first
window closed (else the backlog figure mixes in idle time: the profile's backlog is too small).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench import stream
from bench.procs import Proc, free_port, run_module
from bench.profiles import Profile
from trackpipe.locallog import LocalLog, OffsetStore


def _open_loop(port: int, bodies: Path, profile: Profile) -> dict[str, Any]:
    args = ["--port", str(port), "--bodies", str(bodies), "--concurrency", "32"]
    args += ["--rate", f"{profile.e2e_backlog_rate_per_s:.3f}", "--warmup", "0.5"]
    args += ["--duration", str(profile.e2e_backlog_window_s)]
    out = run_module("bench.loadgen", args, timeout=profile.e2e_backlog_window_s + 90)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _preload(data: Path, events: int) -> int:
    """The backlog in ``data/log``; returns the log offset after it."""
    records = stream.envelope_records(stream.recorded_events(events, seed=41), partitions=4)
    log = LocalLog(data / "log")
    try:
        for lo in range(0, len(records), 500):
            log.append_many(records[lo : lo + 500])
        return log.end_offset
    finally:
        log.close()


def _committed(data: Path) -> int:
    return OffsetStore(data / "consumer.offset").load()


def bench_backlog(profile: Profile, work: Path) -> dict[str, Any]:
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    backlog_end = _preload(data, profile.e2e_backlog_events)
    bodies = work / "bodies.txt"
    bodies.write_bytes(b"\n".join(stream.bodies(2000, 1, seed=42)) + b"\n")
    port = free_port()
    proc = Proc("trackpipe.cli", ["run", "--port", str(port), "--data-dir", str(data)], work / "run.log")
    try:
        proc.wait_healthy(f"http://127.0.0.1:{port}/healthz")
        t0 = time.perf_counter()
        during = _open_loop(port, bodies, profile)
        behind = _committed(data) < backlog_end  # still processing the backlog when the window closed
        deadline = time.monotonic() + 600
        while _committed(data) < backlog_end:
            if proc.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the backlog did not drain:\n{proc.tail()}")
            time.sleep(0.2)
        drain_s = time.perf_counter() - t0
        idle = _open_loop(port, bodies, profile)
    except BaseException as exc:
        raise RuntimeError(f"backlog bench failed: {exc}\n--- trackpipe run ---\n{proc.tail()}") from exc
    finally:
        proc.stop()
    return {
        "events": profile.e2e_backlog_events,
        "rate_per_s": profile.e2e_backlog_rate_per_s,
        "backlog_throughout_window": behind,
        "drain_s": drain_s,
        "backlog_events_per_s": profile.e2e_backlog_events / drain_s if drain_s else 0.0,
        "p50_ms_backlog": during["p50_ms"],
        "p99_ms_backlog": during["p99_ms"],
        "max_ms_backlog": during["max_ms"],
        "p50_ms_idle": idle["p50_ms"],
        "p99_ms_idle": idle["p99_ms"],
        "max_ms_idle": idle["max_ms"],
        "p99_ratio": during["p99_ms"] / idle["p99_ms"] if idle["p99_ms"] else 0.0,
        "unanswered": during["unanswered"] + idle["unanswered"],
        "statuses_backlog": during["statuses"],
    }
