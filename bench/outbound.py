"""Stage ``outbound`` (issue 13): goal webhooks from ``trackpipe run`` (embedded) to a local receiver.

One ``trackpipe run``; the receiver (``bench.outbound_receiver``) is its own process on 127.0.0.1 and
records each request's arrival on the system-wide monotonic clock. Conversions are PVTLNK token POSTs
(``/api/conversions/track/{token}``), one new order each, sent open loop at ``outbound_rate_per_s`` for
``outbound_duration_s``; a conversion counts as recorded when the edge answered 2xx (the edge answers
once the event is in the durable local log), and its latency is the receiver's first arrival of its
webhook minus that time (the time to the first delivery attempt that reached the receiver).

Runs:

- ``one host`` (``outbound_one_host_s``): every conversion to one goal whose ``postback_url`` is the
  receiver on 127.0.0.1 — the headline p50/p95 (target p95 <= 1 s) and deliveries per second through
  one process, with the per-host limits raised for that receiver (``TRACKPIPE_OUTBOUND__RATE_PER_HOST``
  2000/s, ``__MAX_IN_FLIGHT_PER_HOST`` 256; the defaults, 10 and 50/s, would cap it at 50/s);
- ``hosts``: the same load spread over ``outbound_hosts`` goals, each on its own loopback address
  (127.0.0.1 .. 127.0.0.N), so the sender's per-host limits (in flight, rate) bind per address: what the
  engine itself delivers per second and its latency without them;
- ``down``: the receiver is down (port closed) for ``outbound_down_s`` from the first conversion; the
  load is sent in that time; then it comes up and every conversion's webhook must arrive: ``lost`` =
  conversions accepted - distinct webhook-ids received (target 0), ``recovery_s`` = from up to the last
  one, ``ids_with_several_bodies`` (a webhook-id seen for two orders) must be 0 too.

The retry schedule is fast (``TRACKPIPE_OUTBOUND__RETRY_SCHEDULE_S``: 0 then 2 s steps, ~100 s) so
the outage is bridged by retries and not by the production schedule's 5 min step.
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

from bench.loadgen import percentile
from bench.procs import Proc, alive, free_port, http_get
from bench.profiles import Profile

ADMIN_KEY = "bench-admin-key-0123456789-abcdefghijklmnop"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
HEADERS = {"User-Agent": "trackpipe-bench", "Content-Type": "application/json"}
SCHEDULE = ",".join(["0"] + ["2"] * 49)
DRAIN_TIMEOUT_S = 240.0


class Receiver:
    """The receiver process on ``port`` at 127.0.0.1 .. 127.0.0.``hosts``."""

    def __init__(self, port: int, hosts: int, work: Path, name: str):
        self.port, self.hosts, self.work, self.name = port, hosts, work, name
        self.proc: Proc | None = None
        self.seen = 0
        self.records: list[tuple[str, str, float]] = []

    def up(self) -> None:
        args = ["--port", str(self.port), "--hosts", str(self.hosts)]
        self.proc = Proc("bench.outbound_receiver", args, self.work / f"{self.name}.log")
        self.proc.wait_healthy(f"http://127.0.0.1:{self.port}/healthz", timeout=30)

    def url(self, i: int) -> str:
        return f"http://127.0.0.{1 + i % self.hosts}:{self.port}/hook"

    async def poll(self, session: aiohttp.ClientSession) -> None:
        if self.proc is None:
            return
        url = f"http://127.0.0.1:{self.port}/stats"
        async with session.get(url, params={"since": str(self.seen)}) as resp:
            new = orjson.loads(await resp.read())
        self.seen += len(new)
        self.records.extend((str(a), str(b), float(c)) for a, b, c in new)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


async def _goals(session: aiohttp.ClientSession, base: str, receiver: Receiver, tag: str) -> list[str]:
    tokens = []
    for i in range(receiver.hosts):
        spec = {"goal": {"name": f"{tag}-{i}", "goal_type": "purchase", "postback_url": receiver.url(i)}}
        async with session.post(
            f"{base}/api/v1/conversions/goals", data=orjson.dumps(spec), headers=AUTH
        ) as r:
            if r.status != 201:
                raise RuntimeError(f"goal creation answered {r.status}: {await r.text()}")
            tokens.append((await r.json())["token"])
    return tokens


async def _run(
    base: str,
    profile: Profile,
    receiver: Receiver,
    check: Callable[[], None],
    *,
    duration_s: float,
    down_s: float = 0.0,
) -> dict[str, Any]:
    """Send the load to ``receiver``'s goals; bring it up after ``down_s`` (0: it is up already); wait
    until every accepted conversion's webhook arrived (or the drain timeout)."""
    tag = uuid.uuid4().hex[:8]
    accepted: dict[str, float] = {}  # order -> edge 2xx time
    failures: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(
        headers=HEADERS, connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        tokens = await _goals(session, base, receiver, tag)

        async def post(i: int) -> None:
            order = f"{tag}-{i}"
            body = orjson.dumps({"value": 10, "currency": "USD", "order_id": order})
            try:
                async with session.post(
                    f"{base}/api/conversions/track/{tokens[i % len(tokens)]}", data=body
                ) as r:
                    await r.read()
                    if r.status == 200:
                        accepted[order] = time.monotonic()
                    else:
                        failures[str(r.status)] = failures.get(str(r.status), 0) + 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

        start = time.monotonic()
        sent = 0
        while (now := time.monotonic()) - start < duration_s:
            while sent < (now - start) * profile.outbound_rate_per_s:
                task = asyncio.create_task(post(sent))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            check()
            await asyncio.sleep(0.002)
        send_s = time.monotonic() - start
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        up_at: float | None = None
        if down_s:
            await asyncio.sleep(max(0.0, start + down_s - time.monotonic()))
            receiver.up()
            up_at = time.monotonic()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            check()
            await receiver.poll(session)
            if {o for _, o, _ in receiver.records} >= set(accepted):
                break
            await asyncio.sleep(0.2)

    first: dict[str, float] = {}
    bodies_per_id: dict[str, set[str]] = {}
    for msg_id, order, t in receiver.records:
        first[order] = min(t, first.get(order, t))
        bodies_per_id.setdefault(msg_id, set()).add(order)
    latencies = sorted(max(0.0, first[o] - t) for o, t in accepted.items() if o in first)
    ids = {msg_id for msg_id, order, _ in receiver.records if order in accepted}
    result: dict[str, Any] = {
        "hosts": receiver.hosts,
        "rate_per_s": profile.outbound_rate_per_s,
        "sent_rate_per_s": len(accepted) / send_s if send_s else 0.0,
        "conversions": len(accepted),
        "rejected": failures,
        "delivered": len(ids),
        "lost": len(accepted) - len(ids),
        "requests": len(receiver.records),
        "ids_with_several_bodies": sum(1 for v in bodies_per_id.values() if len(v) > 1),
    }
    if latencies:
        arrivals = sorted(first[o] for o in accepted if o in first)
        span = arrivals[-1] - min(accepted.values())
        result.update(
            p50_s=percentile(latencies, 50),
            p95_s=percentile(latencies, 95),
            p99_s=percentile(latencies, 99),
            max_s=latencies[-1],
            # first deliveries per second, from the first conversion accepted to the last delivery
            deliveries_per_s=len(arrivals) / span if span > 0 else 0.0,
        )
    if up_at is not None and latencies:
        result["down_s"] = down_s
        result["recovery_s"] = max(first[o] for o in accepted if o in first) - up_at
    return result


def bench_outbound(profile: Profile, work: Path) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "TRACKPIPE_ADMIN_KEY": ADMIN_KEY,
        "TRACKPIPE_OUTBOUND__ALLOW_NETWORKS": "127.0.0.0/8",
        "TRACKPIPE_OUTBOUND__RETRY_SCHEDULE_S": SCHEDULE,
        "TRACKPIPE_OUTBOUND__TIMEOUT_S": "5",
        "TRACKPIPE_EDGE__RATE_LIMIT_PER_MINUTE": "0",  # the per-token limit would refuse the load
        # one receiver taking 500/s: its per-host limits raised as an operator would for it (the
        # defaults, 10 in flight and 50/s, protect receivers nobody has said can take more)
        "TRACKPIPE_OUTBOUND__RATE_PER_HOST": "2000",
        "TRACKPIPE_OUTBOUND__MAX_IN_FLIGHT_PER_HOST": "256",
    }
    proc = Proc(
        "trackpipe.cli", ["run", "--port", str(port), "--data-dir", str(work / "data")], work / "run.log", env
    )
    receivers: list[Receiver] = []
    try:
        proc.wait_healthy(f"{base}/healthz")
        check = alive(proc)
        # the spread run first: it also warms the process up (the first seconds of a fresh
        # ``trackpipe run`` are slower), so the headline one-host figure is a steady one
        spread = Receiver(free_port(), profile.outbound_hosts, work, "receiver-hosts")
        receivers.append(spread)
        spread.up()
        duration = profile.outbound_duration_s
        spread_result = asyncio.run(_run(base, profile, spread, check, duration_s=duration))
        one = Receiver(free_port(), 1, work, "receiver-one")
        receivers.append(one)
        one.up()
        result = asyncio.run(_run(base, profile, one, check, duration_s=profile.outbound_one_host_s))
        result["spread"] = spread_result
        down = Receiver(free_port(), profile.outbound_hosts, work, "receiver-down")
        receivers.append(down)
        down_s = max(profile.outbound_down_s, duration)
        result["down"] = asyncio.run(_run(base, profile, down, check, duration_s=duration, down_s=down_s))
        result["peak_rss_mb"] = proc.peak_rss_mb()
        status, _ = http_get(f"{base}/healthz")
        result["healthy_after"] = status == 200
        return result
    except BaseException as exc:
        raise RuntimeError(f"outbound bench failed: {exc}\n--- trackpipe run ---\n{proc.tail()}") from exc
    finally:
        for r in receivers:
            r.stop()
        proc.stop()
