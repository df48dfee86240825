"""Stage ``rescale`` (issue 15): the processing pause of ``trackpipe ops rescale`` under load.

``trackpipe edge`` + two ``trackpipe worker`` on the bench's Kafka and ClickHouse, 4 partitions; an
open-loop load of ``rescale_rate_per_s`` Convert ``/track`` requests per second (one visitor of a pool
each) runs before, during and after ``trackpipe ops rescale --partitions rescale_to``. Recorded: the
rescale's own figures (``pause_s``: from the switch of the edges until the new generation's workers
process; each step's seconds; state keys moved), the requests answered otherwise than 2xx (target 0),
and the edge's latency p50/p99 before and during the rescale.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.loadgen import percentile
from bench.procs import Proc, alive, free_port, run_module
from bench.profiles import Profile
from bench.servers import Servers

FROM_PARTITIONS = 4
HEADERS = {"User-Agent": "bench", "Content-Type": "application/json"}


async def _load(base: str, rate: float, stop: asyncio.Event, samples: list[tuple[float, float, int]]) -> None:
    """Open loop: a request every 1/rate s, each in a task of its own; (sent at, latency, status)."""
    visitors = [f"bench-rescale-{i:05d}" for i in range(2000)]
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def one(n: int) -> None:
            v = random.choice(visitors)
            ev: list[dict[str, Any]] = [{"evt": "hitGoal", "goals": [n % 5 + 1]}]
            if n % 4 == 0:
                ev.append({"evt": "tr", "goals": [9], "tid": f"T-{n}", "r": 5 + n % 11, "prc": 1})
            body = orjson.dumps({"cid": "bench", "pid": "bench", "vid": v, "ev": ev})
            t = time.monotonic()
            try:
                async with session.post(
                    f"{base}/track",
                    data=body,
                    headers={"User-Agent": "bench", "Content-Type": "application/json"},
                ) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            samples.append((t, time.monotonic() - t, status))

        start, n = time.monotonic(), 0
        while not stop.is_set():
            task = asyncio.create_task(one(n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            ahead = start + n / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        if tasks:
            await asyncio.wait(tasks)


def _latency(samples: list[tuple[float, float, int]], lo: float, hi: float) -> dict[str, float]:
    got = sorted(lat for t, lat, _ in samples if lo <= t < hi)
    return {"requests": len(got), "p50_s": percentile(got, 50), "p99_s": percentile(got, 99)}


async def _drive(base: str, env: dict[str, str], profile: Profile, check: Any) -> dict[str, Any]:
    samples: list[tuple[float, float, int]] = []
    stop = asyncio.Event()
    load = asyncio.create_task(_load(base, profile.rescale_rate_per_s, stop, samples))
    try:
        await asyncio.sleep(profile.rescale_settle_s)
        check()
        t0 = time.monotonic()
        out = await asyncio.to_thread(
            run_module,
            "trackpipe.cli",
            ["ops", "rescale", "--partitions", str(profile.rescale_to), "--json", "--timeout", "300"],
            400,
            env,
        )
        t1 = time.monotonic()
        await asyncio.sleep(profile.rescale_settle_s)
        check()
    finally:
        stop.set()
        await load
    report = json.loads(out.strip().splitlines()[-1])
    return {
        "from_partitions": FROM_PARTITIONS,
        "to_partitions": profile.rescale_to,
        "pause_s": report["pause_s"],
        "steps_s": report["steps_s"],
        "keys_moved": sum(report["keys_moved"].values()),
        "rescale_s": t1 - t0,
        "load_per_s": profile.rescale_rate_per_s,
        "requests": len(samples),
        "not_2xx": sum(1 for _, _, s in samples if not 200 <= s < 300),
        "before": _latency(samples, 0, t0),
        "during": _latency(samples, t0, t1),
    }


def bench_rescale(servers: Servers, profile: Profile, work: Path) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        "TRACKPIPE_KAFKA_BOOTSTRAP": servers.kafka,
        "TRACKPIPE_KAFKA_TOPIC": f"bench-rescale-{suffix}",
        "TRACKPIPE_PARTITIONS": str(FROM_PARTITIONS),
        "TRACKPIPE_CLICKHOUSE_HOST": servers.clickhouse_host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(servers.clickhouse_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": f"bench_rescale_{suffix}",
        "TRACKPIPE_WORKER_APP_ID": f"bench-rescale-{suffix}",
        "TRACKPIPE_WORKER_METRICS_PORT": "0",
        "TRACKPIPE_WORKER_SESSION_TIMEOUT_S": "6",
        "TRACKPIPE_WORKER_HEARTBEAT_INTERVAL_S": "1",
        "TRACKPIPE_EDGE__RATE_LIMIT_PER_MINUTE": "0",
    }
    run_module("trackpipe.cli", ["topics", "create"], timeout=120, env=env)
    run_module("trackpipe.cli", ["migrate"], timeout=120, env=env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc("trackpipe.cli", ["edge", "--port", str(port)], work / "edge.log", env)
    workers = [Proc("trackpipe.cli", ["worker"], work / f"worker{i}.log", env) for i in (1, 2)]
    try:
        edge.wait_healthy(f"{base}/healthz")
        return asyncio.run(_drive(base, env, profile, alive(edge, *workers)))
    except BaseException as exc:
        logs = "\n".join(f"--- {p.log_path.name} ---\n{p.tail()}" for p in (edge, *workers))
        raise RuntimeError(f"rescale bench failed: {exc}\n{logs}") from exc
    finally:
        for p in (edge, *workers):
            p.stop()
        from sinks.server_backend import ServerBackend

        with ServerBackend(servers.clickhouse_host, servers.clickhouse_port, "default") as admin:
            admin.command(f"DROP DATABASE IF EXISTS `bench_rescale_{suffix}`")
