"""Stage ``alerts`` (issue 14): from the conversion that crosses a threshold to the firing webhook.

One ``trackpipe run`` (embedded: alert rules are evaluated in the runner, every second of stream time
with 2 s allowed lateness, docs/alerts.md); the webhook receiver is ``bench.outbound_receiver`` in its
own process on 127.0.0.1, recording each request's arrival (``<rule id>:<state>``) on the system-wide
monotonic clock, which the bench reads too.

A **probe** is a goal with one rule "conversions of the goal above 0 in a 10 s window" (threshold,
``window_s`` 10, no pending, no keep-firing) whose webhook is the receiver. An **episode**: one
conversion of the goal (PVTLNK token POST ``/api/conversions/track/{token}``, a new order) sent at a
random moment; ``t`` = when the edge answered 2xx (the event is in the durable local log); the rule
fires and ``a`` = the receiver's first arrival of that firing transition (dedup by webhook-id);
latency = ``a - t``. Before the probe's next episode the bench waits for its ``resolved`` webhook (the
conversion leaves the 10 s window: ~13 s after it). To sample many episodes in little time, several
probes (``lanes``, each its own goal and rule) run in rotation, started at random offsets: episodes
overlap in time but never on one rule. An episode whose firing does not arrive within
``EPISODE_TIMEOUT_S`` is ``missed``.

Runs:

- ``latency`` (the headline ``alerts.p50_s`` / ``p95_s``, target p95 <= 5 s): ``alerts_episodes``
  episodes over ``alerts_lanes`` probes spread over ``alerts_projects`` projects, nothing else running;
- ``capacity``: for each point (R, N) of ``alerts_capacity_points`` (cumulative, in order), N projects
  with R rules each, created through ``POST /api/v1/alerts``: a mix of threshold (conversions of a goal,
  revenue of the project, conversion rate of a link), spike and change rules with 60 s .. 1 h windows
  whose thresholds are never reached (so they are evaluated every second but send nothing); a
  background load of ``alerts_load_per_s`` requests per second over those projects (3 in 4 clicks on
  the projects' links, 1 in 4 conversions of their goals); then ``alerts_capacity_episodes`` probe
  episodes (fresh probes, in the first projects) measured as above. ``capacity.rules_x_projects`` =
  the largest R x N whose probe p95 <= 5 s with no episode missed (0 if none); a point that misses it
  ends the series (larger ones would too). The probes' own rules are not counted in R x N.

Both runs again through ``trackpipe edge`` -> Kafka -> **one** ``trackpipe worker`` (``distributed``,
when the profile has ``alerts_distributed_points``): the rules are evaluated by the worker's evaluator
group and notified through the deliveries topic, so ``distributed.capacity.rules_x_projects`` is how many
rules x projects one worker evaluates while keeping the p95; its CPU share and peak RSS are the worker's.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.loadgen import percentile
from bench.outbound import ADMIN_KEY, AUTH, HEADERS, Receiver
from bench.procs import Proc, alive, free_port, http_get, run_module
from bench.profiles import Profile
from bench.servers import Servers

TARGET_P95_S = 5.0
WINDOW_S = 10  # the smallest window a rule may have: the shortest episodes
EPISODE_TIMEOUT_S = 30.0  # a firing later than this is a missed episode
RESOLVE_TIMEOUT_S = 40.0  # a probe whose resolution does not arrive is retired
GOALS_PER_PROJECT = 5  # background goals of a capacity project (its rules' scopes)


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(url, data=orjson.dumps(body), headers=AUTH) as r:
        if r.status != 201:
            raise RuntimeError(f"POST {url} answered {r.status}: {await r.text()}")
        return dict(await r.json())


async def _gather_limited(coros: list[Any], limit: int = 8) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return list(await asyncio.gather(*(one(c) for c in coros)))


@dataclass
class Probe:
    project: str
    token: str
    rule_id: str


@dataclass
class Arrivals:
    """The receiver's records, polled: first arrival of each transition (webhook-id) per rule and state."""

    receiver: Receiver
    first: dict[str, tuple[str, float]] = field(default_factory=dict)  # webhook-id -> (key, t)
    requests: int = 0

    async def poll(self, session: aiohttp.ClientSession) -> None:
        before = len(self.receiver.records)
        await self.receiver.poll(session)
        for msg_id, key, t in self.receiver.records[before:]:
            self.requests += 1
            if msg_id not in self.first or t < self.first[msg_id][1]:
                self.first[msg_id] = (key, t)

    def times(self, rule_id: str, state: str) -> list[float]:
        key = f"{rule_id}:{state}"
        return sorted(t for k, t in self.first.values() if k == key)


async def _probes(
    session: aiohttp.ClientSession, base: str, receiver: Receiver, projects: list[str], lanes: int, tag: str
) -> list[Probe]:
    async def one(i: int) -> Probe:
        project = projects[i % len(projects)]
        goal = await _post(
            session,
            f"{base}/api/v1/conversions/goals",
            {"goal": {"name": f"probe-{tag}-{i}", "goal_type": "purchase", "project": project}},
        )
        rule = await _post(
            session,
            f"{base}/api/v1/alerts",
            {
                "project": project,
                "name": f"probe-{tag}-{i}",
                "kind": "threshold",
                "metric": "conversions",
                "op": "above",
                "value": 0,
                "window_s": WINDOW_S,
                "scope": {"goal_id": goal["id"]},
                "channels": {"webhook_url": f"http://127.0.0.1:{receiver.port}/alert"},
            },
        )
        return Probe(project, goal["token"], rule["id"])

    return await _gather_limited([one(i) for i in range(lanes)])


async def _episodes(
    session: aiohttp.ClientSession,
    base: str,
    probes: list[Probe],
    arrivals: Arrivals,
    episodes: int,
    check: Callable[[], None],
) -> dict[str, Any]:
    """Run ``episodes`` episodes over ``probes`` (each probe: one episode at a time); the latencies."""
    tag = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    missed = 0
    failures: dict[str, int] = {}
    per_lane = [
        episodes // len(probes) + (1 if i < episodes % len(probes) else 0) for i in range(len(probes))
    ]
    stagger = min(4.0, 0.5 * len(probes))

    async def lane(i: int, probe: Probe) -> None:
        nonlocal missed
        await asyncio.sleep(random.uniform(0, stagger))
        for k in range(per_lane[i]):
            fired_before = len(arrivals.times(probe.rule_id, "firing"))
            body = orjson.dumps({"value": 1, "currency": "USD", "order_id": f"{tag}-{i}-{k}"})
            async with session.post(f"{base}/api/conversions/track/{probe.token}", data=body) as r:
                await r.read()
                sent_at = time.monotonic()
                if r.status != 200:
                    failures[str(r.status)] = failures.get(str(r.status), 0) + 1
                    missed += 1
                    continue
            while len(fired := arrivals.times(probe.rule_id, "firing")) <= fired_before:
                if time.monotonic() - sent_at > EPISODE_TIMEOUT_S:
                    break
                check()
                await asyncio.sleep(0.05)
            else:
                latencies.append(max(0.0, fired[fired_before] - sent_at))
            if len(fired) <= fired_before:
                missed += 1
                return  # the probe's state is unknown: retire it
            if k + 1 == per_lane[i]:
                return
            while len(arrivals.times(probe.rule_id, "resolved")) < len(fired):
                if time.monotonic() - sent_at > RESOLVE_TIMEOUT_S:
                    missed += per_lane[i] - k - 1
                    return
                check()
                await asyncio.sleep(0.1)
            await asyncio.sleep(random.uniform(0.0, 1.0))  # a random phase against the 1 s tick

    async def poller() -> None:
        while True:
            check()
            await arrivals.poll(session)
            await asyncio.sleep(0.05)

    began = time.monotonic()
    poll_task = asyncio.create_task(poller())
    try:
        await asyncio.gather(*(lane(i, p) for i, p in enumerate(probes)))
    finally:
        if poll_task.done():
            poll_task.result()  # the receiver or ``trackpipe run`` failed
        poll_task.cancel()
        await asyncio.gather(poll_task, return_exceptions=True)
    latencies.sort()
    out: dict[str, Any] = {
        "episodes": len(latencies),
        "missed": missed,
        "lanes": len(probes),
        "rejected": failures,
        "duration_s": time.monotonic() - began,
    }
    if latencies:
        out.update(
            p50_s=percentile(latencies, 50),
            p95_s=percentile(latencies, 95),
            p99_s=percentile(latencies, 99),
            min_s=latencies[0],
            max_s=latencies[-1],
        )
    return out


class Capacity:
    """The capacity projects: goals, a link and background rules each, grown point by point."""

    KINDS = ("goal_conversions", "spike", "project_revenue", "link_rate", "change")
    WINDOWS = (60, 300, 600, 3600)

    def __init__(self, base: str, tag: str):
        self.base, self.tag = base, tag
        self.goals: dict[str, list[tuple[str, str]]] = {}  # project -> [(goal id, token)]
        self.links: dict[str, str] = {}  # project -> link id
        self.rules: dict[str, int] = {}  # project -> rules created

    def project(self, j: int) -> str:
        return f"cap-{self.tag}-{j}"

    async def _project(self, session: aiohttp.ClientSession, project: str) -> None:
        goals = await _gather_limited(
            [
                _post(
                    session,
                    f"{self.base}/api/v1/conversions/goals",
                    {"goal": {"name": f"bg-{g}", "goal_type": "purchase", "project": project}},
                )
                for g in range(GOALS_PER_PROJECT)
            ]
        )
        link = await _post(
            session, f"{self.base}/api/v1/links", {"url": "https://shop.example/a", "project": project}
        )
        self.goals[project] = [(g["id"], g["token"]) for g in goals]
        self.links[project] = link["id"]
        self.rules[project] = 0

    def _rule(self, project: str, r: int) -> dict[str, Any]:
        goal_id = self.goals[project][r % GOALS_PER_PROJECT][0]
        body: dict[str, Any] = {
            "project": project,
            "name": f"bg-{r}",
            "window_s": self.WINDOWS[r % len(self.WINDOWS)],
        }
        kind = self.KINDS[r % len(self.KINDS)]
        if kind == "goal_conversions":
            body.update(kind="threshold", op="above", value=1e6, scope={"goal_id": goal_id})
        elif kind == "spike":
            body.update(kind="spike", min_count=1_000_000, factor=3, scope={"goal_id": goal_id})
        elif kind == "project_revenue":
            body.update(kind="threshold", metric="revenue", op="above", value=1e12)
        elif kind == "link_rate":
            body.update(
                kind="threshold",
                metric="conversion_rate",
                op="above",
                value=1e6,
                scope={"link_id": self.links[project]},
            )
        else:
            body.update(
                kind="change",
                op="above",
                value=1e6,
                change_mode="absolute",
                scope={"goal_id": goal_id},
            )
        return body

    async def grow(self, session: aiohttp.ClientSession, rules_per_project: int, projects: int) -> int:
        """Up to ``projects`` projects with ``rules_per_project`` rules each; returns the rules created."""
        new = [self.project(j) for j in range(projects) if self.project(j) not in self.goals]
        await _gather_limited([self._project(session, p) for p in new], limit=4)
        bodies = []
        for j in range(projects):
            p = self.project(j)
            bodies += [self._rule(p, r) for r in range(self.rules[p], rules_per_project)]
            self.rules[p] = max(self.rules[p], rules_per_project)
        await _gather_limited([_post(session, f"{self.base}/api/v1/alerts", b) for b in bodies])
        return len(bodies)

    def total_rules(self) -> int:
        return sum(self.rules.values())


async def _load(
    session: aiohttp.ClientSession, cap: Capacity, projects: int, rate: float, stop: asyncio.Event
) -> dict[str, Any]:
    """Open-loop background load until ``stop``: clicks and conversions over the first ``projects``."""
    names = [cap.project(j) for j in range(projects)]
    tag = uuid.uuid4().hex[:8]
    counts = {"clicks": 0, "conversions": 0}
    failures: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()
    rng = random.Random(7)

    async def one(i: int) -> None:
        project = names[i % len(names)]
        try:
            if i % 4 == 3:
                token = cap.goals[project][rng.randrange(GOALS_PER_PROJECT)][1]
                body = orjson.dumps({"value": 5, "currency": "USD", "order_id": f"bg-{tag}-{i}"})
                async with session.post(f"{cap.base}/api/conversions/track/{token}", data=body) as r:
                    await r.read()
                    ok, kind = r.status == 200, "conversions"
            else:
                url = f"{cap.base}/c/{cap.links[project]}"
                async with session.get(url, allow_redirects=False) as r:
                    await r.read()
                    ok, kind = r.status < 400, "clicks"
            if ok:
                counts[kind] += 1
            else:
                failures[str(r.status)] = failures.get(str(r.status), 0) + 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1

    start = time.monotonic()
    for i in itertools.count():
        if stop.is_set():
            break
        due = start + i / rate
        if (delay := due - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                break
            except TimeoutError:
                pass
        task = asyncio.create_task(one(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    elapsed = time.monotonic() - start
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "load_per_s": rate,
        "sent_rate_per_s": (counts["clicks"] + counts["conversions"]) / elapsed if elapsed else 0.0,
        **counts,
        "load_rejected": failures,
    }


async def _run(
    base: str,
    profile: Profile,
    receiver: Receiver,
    proc: Proc,
    check: Callable[[], None],
    capacity_points: tuple[tuple[int, int], ...],
) -> dict[str, Any]:
    """``proc`` is the process that evaluates the rules (its CPU share is reported); ``check`` raises
    when one of the pipeline's processes has exited."""
    tag = uuid.uuid4().hex[:6]
    arrivals = Arrivals(receiver)
    async with aiohttp.ClientSession(
        headers=HEADERS, connector=aiohttp.TCPConnector(limit=64), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        # latency: probes only
        projects = [f"alat-{tag}-{i}" for i in range(profile.alerts_projects)]
        probes = await _probes(session, base, receiver, projects, profile.alerts_lanes, f"lat-{tag}")
        result = await _episodes(session, base, probes, arrivals, profile.alerts_episodes, check)
        result["projects"] = len(projects)

        # capacity: background rules and load, then probes
        cap = Capacity(base, tag)
        points: list[dict[str, Any]] = []
        best = 0
        for n, (rules_per_project, n_projects) in enumerate(capacity_points):
            t0 = time.monotonic()
            created = await cap.grow(session, rules_per_project, n_projects)
            create_s = time.monotonic() - t0
            stop = asyncio.Event()
            load = asyncio.create_task(_load(session, cap, n_projects, profile.alerts_load_per_s, stop))
            cpu0, w0 = proc.cpu_seconds(), time.monotonic()
            try:
                await asyncio.sleep(2.0)  # the new rules are read at the next batch; the load settles
                lanes = min(profile.alerts_lanes, profile.alerts_capacity_episodes)
                cap_probes = await _probes(
                    session,
                    base,
                    receiver,
                    [cap.project(j) for j in range(n_projects)],
                    lanes,
                    f"cap{n}-{tag}",
                )
                point = await _episodes(
                    session, base, cap_probes, arrivals, profile.alerts_capacity_episodes, check
                )
            finally:
                stop.set()
                load_result = await load
            point.update(
                rules_per_project=rules_per_project,
                projects=n_projects,
                rules_x_projects=rules_per_project * n_projects,
                rules_created=created,
                create_s=create_s,
                rules_per_s_created=created / create_s if create_s > 0 else 0.0,
                cpu_share=(proc.cpu_seconds() - cpu0) / (time.monotonic() - w0),
                **load_result,
            )
            points.append(point)
            ok = point["missed"] == 0 and point.get("p95_s", math.inf) <= TARGET_P95_S
            if not ok:
                break
            best = max(best, rules_per_project * n_projects)
        result["capacity"] = {
            "rules_x_projects": best,
            "total_rules": cap.total_rules() + len(probes) + sum(p["lanes"] for p in points),
            "points": points,
        }
        await arrivals.poll(session)
        result["webhook_requests"] = arrivals.requests
        result["transitions_received"] = len(arrivals.first)
    return result


ENV = {
    "TRACKPIPE_ADMIN_KEY": ADMIN_KEY,
    "TRACKPIPE_OUTBOUND__ALLOW_NETWORKS": "127.0.0.0/8",
    "TRACKPIPE_OUTBOUND__TIMEOUT_S": "5",
    "TRACKPIPE_EDGE__RATE_LIMIT_PER_MINUTE": "0",  # the per-token limit would refuse the load
}


def _embedded(profile: Profile, work: Path) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(
        "trackpipe.cli", ["run", "--port", str(port), "--data-dir", str(work / "data")], work / "run.log", ENV
    )
    receiver = Receiver(free_port(), 1, work, "receiver")
    try:
        proc.wait_healthy(f"{base}/healthz")
        receiver.up()
        result = asyncio.run(_run(base, profile, receiver, proc, alive(proc), profile.alerts_capacity_points))
        result["peak_rss_mb"] = proc.peak_rss_mb()
        status, _ = http_get(f"{base}/healthz")
        result["healthy_after"] = status == 200
        return result
    except BaseException as exc:
        raise RuntimeError(f"alerts bench failed: {exc}\n--- trackpipe run ---\n{proc.tail()}") from exc
    finally:
        receiver.stop()
        proc.stop()


def _distributed(servers: Servers, profile: Profile, work: Path) -> dict[str, Any]:
    """The same runs through ``trackpipe edge`` -> Kafka -> one ``trackpipe worker`` (which evaluates the
    rules: its CPU share and peak RSS are reported); capacity over ``alerts_distributed_points``."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        **ENV,
        "TRACKPIPE_KAFKA_BOOTSTRAP": servers.kafka,
        "TRACKPIPE_KAFKA_TOPIC": f"bench-alerts-{suffix}",
        "TRACKPIPE_PARTITIONS": "4",
        "TRACKPIPE_CLICKHOUSE_HOST": servers.clickhouse_host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(servers.clickhouse_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": f"bench_alerts_{suffix}",
        "TRACKPIPE_WORKER_APP_ID": f"bench-alerts-{suffix}",
        "TRACKPIPE_WORKER_METRICS_PORT": "0",
    }
    run_module("trackpipe.cli", ["topics", "create"], timeout=120, env=env)
    run_module("trackpipe.cli", ["migrate"], timeout=120, env=env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc("trackpipe.cli", ["edge", "--port", str(port)], work / "edge.log", env)
    worker = Proc("trackpipe.cli", ["worker"], work / "worker.log", env)
    receiver = Receiver(free_port(), 1, work, "receiver")
    try:
        edge.wait_healthy(f"{base}/healthz")
        receiver.up()
        check = alive(edge, worker)
        result = asyncio.run(_run(base, profile, receiver, worker, check, profile.alerts_distributed_points))
        result["worker_peak_rss_mb"] = worker.peak_rss_mb()
        return result
    except BaseException as exc:
        raise RuntimeError(
            f"distributed alerts bench failed: {exc}\n--- edge ---\n{edge.tail()}"
            f"\n--- worker ---\n{worker.tail()}"
        ) from exc
    finally:
        receiver.stop()
        edge.stop()
        worker.stop()
        from sinks.server_backend import ServerBackend

        with ServerBackend(servers.clickhouse_host, servers.clickhouse_port, "default") as admin:
            admin.command(f"DROP DATABASE IF EXISTS `bench_alerts_{suffix}`")


def bench_alerts(servers: Servers | None, profile: Profile, work: Path) -> dict[str, Any]:
    (work / "embedded").mkdir(exist_ok=True)
    result = _embedded(profile, work / "embedded")
    result["target_p95_s"] = TARGET_P95_S
    result["window_s"] = WINDOW_S
    if profile.alerts_distributed_points and servers is not None:
        (work / "distributed").mkdir(exist_ok=True)
        try:
            result["distributed"] = _distributed(servers, profile, work / "distributed")
        except Exception as exc:  # keep the embedded numbers; the failure is reported as an error
            result["errors"] = {"distributed": str(exc)}
    return result
