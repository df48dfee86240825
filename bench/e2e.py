"""Stage 4, end to end: from the edge's 2xx to the event being visible in the Top-5 report.

A background stream (``e2e_requests_per_s`` requests of 1-5 events, open loop) keeps the pipeline busy at
a moderate rate; probes (``e2e_probes_per_s``) are goal hits of new visitors of a dedicated project, so
each accepted probe raises that goal's conversions in ``GET /api/v1/reports/top-events`` by one. A poller
asks for the report back to back (20 ms pause); probe *i* is visible at the first answer counting more
than *i* conversions, and its latency is that answer's arrival minus the probe's 2xx. Measured for the
embedded default (``trackpipe run``) and, when the profile asks, the distributed pipeline (``trackpipe
edge`` + ``trackpipe worker`` on the real Kafka broker and ClickHouse server).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import stream
from bench.backlog import bench_backlog
from bench.kafka_topics import create_topics
from bench.loadgen import percentile
from bench.procs import Proc, alive, free_port, run_module
from bench.profiles import Profile
from bench.servers import Servers

HEADERS = {"User-Agent": "trackpipe-bench", "Content-Type": "application/json"}
GOAL = "1"


def _probe_body(project: str, i: int) -> bytes:
    return orjson.dumps(
        {"cid": "77", "pid": project, "vid": f"probe-{i}", "ev": [{"evt": "hitGoal", "goals": [1]}]}
    )


async def _conversions(session: aiohttp.ClientSession, base: str, project: str) -> int:
    async with session.get(f"{base}/api/v1/reports/top-events", params={"project": project}) as resp:
        if resp.status != 200:
            return -1
        body = await resp.json()
    return next((int(r["conversions"]) for r in body["rows"] if r["goal_id"] == GOAL), 0)


async def _wait_visible(
    session: aiohttp.ClientSession, base: str, within_s: float, check: Callable[[], None]
) -> float:
    """Send one probe to a warm-up project and wait until the report shows it (pipeline is up)."""
    project = f"warm-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    async with session.post(f"{base}/track", data=_probe_body(project, 0)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"warm-up probe answered {resp.status}: {await resp.text()}")
    while time.monotonic() - t0 < within_s:
        check()
        if await _conversions(session, base, project) >= 1:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    raise RuntimeError(f"warm-up probe not visible in the report after {within_s}s")


async def drive(
    base: str, profile: Profile, check: Callable[[], None], settle_timeout: float = 90
) -> dict[str, Any]:
    """Run the load and the probes; ``check()`` raises when a pipeline process has died."""
    project = f"e2e-{uuid.uuid4().hex[:8]}"
    src = stream.Stream(seed=51)
    accepted_at: dict[int, float] = {}
    visible_at: dict[int, float] = {}
    failures: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()
    sending = True
    background_events = 0

    async with aiohttp.ClientSession(
        headers=HEADERS, connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        warmup_s = await _wait_visible(session, base, settle_timeout, check)

        async def post(body: bytes, probe: int | None) -> None:
            nonlocal background_events
            try:
                async with session.post(f"{base}/track", data=body) as resp:
                    await resp.read()
                    if resp.status == 200:
                        if probe is not None:
                            accepted_at[probe] = time.perf_counter()
                        else:
                            background_events += orjson.loads(body)["ev"].__len__()
                    else:
                        failures[str(resp.status)] = failures.get(str(resp.status), 0) + 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

        def spawn(coro: Any) -> None:
            task = asyncio.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def sender() -> None:
            nonlocal sending
            start = time.perf_counter()
            sent = probes = 0
            while (now := time.perf_counter()) - start < profile.e2e_duration_s:
                elapsed = now - start
                while sent < elapsed * profile.e2e_requests_per_s:
                    spawn(post(orjson.dumps(src.payload(1 + src.rng.randrange(5))), None))
                    sent += 1
                while probes < elapsed * profile.e2e_probes_per_s:
                    spawn(post(_probe_body(project, probes), probes))
                    probes += 1
                await asyncio.sleep(0.005)
            sending = False

        async def poller() -> None:
            seen = 0
            deadline: float | None = None
            while True:
                check()
                if not sending:
                    deadline = deadline or time.monotonic() + settle_timeout
                    if (not tasks and seen >= len(accepted_at)) or time.monotonic() > deadline:
                        return
                count = await _conversions(session, base, project)
                now = time.perf_counter()
                while seen < count:
                    visible_at[seen] = now
                    seen += 1
                await asyncio.sleep(0.02)

        await asyncio.gather(sender(), poller())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    latencies = sorted(max(0.0, visible_at[i] - accepted_at[i]) for i in accepted_at if i in visible_at)
    if not latencies:
        raise RuntimeError(f"no probe became visible (failures: {failures})")
    return {
        "probes": len(accepted_at),
        "visible": len(latencies),
        "background_events": background_events,
        "failures": failures,
        "warmup_s": warmup_s,
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "p99_s": percentile(latencies, 99),
        "max_s": latencies[-1],
    }


def _embedded(profile: Profile, work: Path) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(
        "trackpipe.cli", ["run", "--port", str(port), "--data-dir", str(work / "data")], work / "run.log"
    )
    try:
        proc.wait_healthy(f"{base}/healthz")
        result = asyncio.run(drive(base, profile, alive(proc)))
        result["peak_rss_mb"] = proc.peak_rss_mb()
        return result
    except BaseException as exc:
        raise RuntimeError(f"embedded e2e failed: {exc}\n--- trackpipe run ---\n{proc.tail()}") from exc
    finally:
        proc.stop()


def _distributed(servers: Servers, profile: Profile, work: Path) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "TRACKPIPE_KAFKA_BOOTSTRAP": servers.kafka,
        "TRACKPIPE_KAFKA_TOPIC": f"bench-e2e-{suffix}",
        "TRACKPIPE_PARTITIONS": "4",
        "TRACKPIPE_CLICKHOUSE_HOST": servers.clickhouse_host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(servers.clickhouse_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": f"bench_e2e_{suffix}",
        "TRACKPIPE_WORKER_APP_ID": f"bench-e2e-{suffix}",
    }
    create_topics(servers.kafka, env["TRACKPIPE_KAFKA_TOPIC"], 4, env)  # the app id names the stage topics
    run_module("trackpipe.cli", ["migrate"], timeout=120, env=env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc("trackpipe.cli", ["edge", "--port", str(port)], work / "edge.log", env)
    worker = Proc("trackpipe.cli", ["worker"], work / "worker.log", env)
    try:
        edge.wait_healthy(f"{base}/healthz")
        return asyncio.run(drive(base, profile, alive(edge, worker)))
    except BaseException as exc:
        raise RuntimeError(
            f"distributed e2e failed: {exc}\n--- edge ---\n{edge.tail()}\n--- worker ---\n{worker.tail()}"
        ) from exc
    finally:
        edge.stop()
        worker.stop()
        from sinks.server_backend import ServerBackend

        with ServerBackend(servers.clickhouse_host, servers.clickhouse_port, "default") as admin:
            admin.command(f"DROP DATABASE IF EXISTS `bench_e2e_{suffix}`")


def bench_e2e(servers: Servers, profile: Profile, work: Path) -> dict[str, Any]:
    (work / "embedded").mkdir(exist_ok=True)
    result = _embedded(profile, work / "embedded")
    (work / "backlog").mkdir(exist_ok=True)
    result["embedded"] = bench_backlog(profile, work / "backlog")
    if profile.e2e_distributed:
        (work / "distributed").mkdir(exist_ok=True)
        try:
            result["distributed"] = _distributed(servers, profile, work / "distributed")
        except Exception as exc:  # keep the embedded numbers; the failure is reported as an error
            result["errors"] = {"distributed": str(exc)}
    return result
