"""``trackpipe ops rescale``'s fault paths on the real broker (issue 15, docs/rescaling.md "Failure and
limits"), each under a steady load through an edge on a small pipeline (2 -> 4 partitions):

- the ``ops rescale`` process SIGKILLed mid-move (the layout says *moving*, one stage's state is in the
  target, the others are not): ``ops rescale --resume`` finishes it;
- a worker of the old generation SIGKILLed during the drain: the other one takes its partitions over
  and drains to the fence;
- the broker restarted (same port and storage) as the switch reaches the edge, whose old sender still
  holds what it accepted during the outage: every request answered 2xx has its events in the events
  topics and in ``events_raw`` exactly once (and ``ops rescale`` waits the outage out).

Each ends with the layout stable on the target, ``ops status`` clean, every request answered 2xx, and
the rescale harness's end-state check (tests/rescale_pipeline.py): ``events_raw`` is exactly the accepted
events and the conversions, revenue, credits and sessions equal a clean run of the pure cores over them —
nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from processors.messages import STAGES
from processors.runtime.faust.topology import TopologyNames
from tests.integration.test_outbound_embedded import wait_for
from tests.rescale_pipeline import (
    Pipeline,
    assert_exact,
    events_of,
    phases,
    pipeline_env,
    status,
    wait_phase,
)
from tests.scenario import cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FROM, TO = 2, 4
LOAD = {"rate_per_s": 15.0, "visitors": 40, "rows": 30}
RESCALE = ["ops", "rescale", "--partitions", str(TO), "--json", "--timeout", "300"]


def _popen(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stopped(proc: subprocess.Popen[str]) -> bool:
    """The process is stopped (SIGSTOP); an exit is a failure."""
    if proc.poll() is not None:
        raise AssertionError(f"exited {proc.returncode} instead of stopping:\n{proc.communicate()[0]}")
    state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state in ("T", "t")


def _records(bootstrap: str, topic: str, partitions: int) -> int:
    async def count() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            ends, starts = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
            return sum(ends[tp] - starts[tp] for tp in tps)
        finally:
            await consumer.stop()

    return asyncio.run(count())


def _report(out: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert report["target"] == {"generation": 1, "partitions": TO}, report
    assert set(report["keys_moved"]) == set(STAGES), report
    return report


def _assert_done(pipe: Pipeline, killed: object = None) -> None:
    """The layout stable on the target after the protocol's phases, ``ops status`` clean, every request
    answered 2xx, every process alive, and the end state exact."""
    assert phases(pipe.bootstrap, pipe.layout_topic)[-5:] == ["stable", "switching", "draining", "moving",
                                                             "stable"]  # fmt: skip
    # TRACKPIPE_PARTITIONS as an operator sets it after the rescale (the command says so)
    env = {**pipe.env, "TRACKPIPE_PARTITIONS": str(TO)}
    out = cli(["ops", "status", "--json"], env, pipe.tmp_path)
    after = json.loads(out.stdout)
    assert after["layout"]["current"] == {"generation": 1, "partitions": TO}, after["layout"]
    assert after["layout"]["phase"] == "stable" and after["layout"]["previous"]["generation"] == 0
    assert after["problems"] == [] and out.returncode == 0, after["problems"]
    assert pipe.load is not None
    pipe.load.stop()
    assert pipe.load.failures == [], pipe.load.failures[:10]
    assert pipe.load.requests > 100
    for proc in pipe.procs():
        assert proc is killed or proc.p.poll() is None, proc.tail()
    generations = [(pipe.events_topic_of(0), FROM), (pipe.events_topic_of(1), TO)]
    assert_exact(pipe.bootstrap, pipe.backend, [], generations)


@pytest.mark.timeout(600)  # one rescale under load: about 60 s on an idle 2-core machine
def test_rescale_killed_mid_move_is_finished_by_resume(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = pipeline_env(kafka_bootstrap, clickhouse_server, ch_database, unique_name, FROM)
    pipe = Pipeline(tmp_path, env, clickhouse_server)
    held: subprocess.Popen[str] | None = None
    try:
        pipe.start()
        pipe.start_load(**LOAD)
        # the rescale stops itself once the first stage's state is in the target (test seam), is killed
        held = _popen(["-m", "tests.rescale_hold", str(TO)], env, tmp_path)
        wait_for("the rescale held mid-move", lambda: _stopped(held), 180)
        assert phases(kafka_bootstrap, pipe.layout_topic)[-1] == "moving"
        target = TopologyNames(env["TRACKPIPE_KAFKA_TOPIC"], env["TRACKPIPE_WORKER_APP_ID"]).at(1)
        written = {s: _records(kafka_bootstrap, target.changelog(s), TO) for s in STAGES}
        assert written[STAGES[0]] > 0 and not any(written[s] for s in STAGES[1:]), written
        held.kill()
        out = held.communicate(timeout=30)[0]
        assert held.returncode == -signal.SIGKILL and f"held after: moved {STAGES[0]}" in out, out
        during = status(env, tmp_path)
        assert during["layout"]["phase"] == "moving", during["layout"]
        assert any("rescale is in progress" in p["what"] for p in during["problems"])

        resumed = cli(["ops", "rescale", "--resume", "--json", "--timeout", "300"], env, tmp_path, 400)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        _report(resumed.stdout)
        _assert_done(pipe)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipe.logs()}") from None
    finally:
        if held is not None and held.poll() is None:
            held.kill()
            held.communicate()
        pipe.stop()


def _settled(pipe: Pipeline) -> bool:
    """The old generation's group is stable with every worker in it and every events partition held."""
    group = next(
        g for g in status(pipe.env, pipe.tmp_path)["groups"] if g["role"] == "processing g0 (current)"
    )
    held = {p for m in group["members"] for p in m["partitions"] if p.startswith(pipe.events_topic + ":")}
    return group["state"] == "Stable" and len(group["members"]) == len(pipe.workers) and len(held) == FROM


@pytest.mark.timeout(600)  # one rescale under load with a worker's session timeout: about 60 s
def test_worker_killed_during_the_drain(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = pipeline_env(kafka_bootstrap, clickhouse_server, ch_database, unique_name, FROM)
    pipe = Pipeline(tmp_path, env, clickhouse_server)
    rescale: subprocess.Popen[str] | None = None
    try:
        pipe.start()
        pipe.start_load(**LOAD)
        wait_for("both workers in the group, the events partitions assigned", lambda: _settled(pipe), 120)
        # the old generation's workers paused: the drain has the events accepted meanwhile to process
        for w in pipe.workers:
            w.p.send_signal(signal.SIGSTOP)
        try:
            rescale = _popen(["-m", "trackpipe.cli", *RESCALE], env, tmp_path)
            wait_phase(kafka_bootstrap, pipe.layout_topic, "draining")
            during = status(env, tmp_path)
            # the worker to kill holds events partitions with events to drain (a member's client id
            # names its worker's pid): the other one must take them over and drain them to the fence
            old = next(g for g in during["groups"] if g["role"] == "processing g0 (current)")
            assert all(p["lag"] > 0 for p in old["partitions"] if p["topic"] == pipe.events_topic), old
            holders = {
                m["client_id"].rsplit("-", 1)[-1]
                for m in old["members"]
                if any(p.startswith(pipe.events_topic + ":") for p in m["partitions"])
            }
            killed = next((w for w in pipe.workers if str(w.p.pid) in holders), None)
            assert killed is not None, old
            killed.p.kill()  # SIGKILL, stopped as it is: no batch finished, nothing committed, no leave
            assert killed.p.wait(30) == -signal.SIGKILL
        finally:
            for w in pipe.workers:
                if w.p.poll() is None:
                    w.p.send_signal(signal.SIGCONT)
        out = rescale.communicate(timeout=400)[0]
        assert rescale.returncode == 0, out
        _report(out)
        _assert_done(pipe, killed)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipe.logs()}") from None
    finally:
        if rescale is not None and rescale.poll() is None:
            rescale.kill()
            rescale.communicate()
        pipe.stop()


class _Requests:
    """A steady stream of ``/track`` requests, each its own visitor (``brk-<n>``, two events), every answer
    recorded: which requests were answered 2xx, so which visitors' events must be stored."""

    def __init__(self, base: str, rate_per_s: float = 20.0):
        self.base, self.rate = base, rate_per_s
        self.answers: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switch-requests", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n, start = 0, time.monotonic()
        while not self._stop.is_set():
            visitor = f"brk-{n:05d}"
            body = {"cid": "brk", "pid": "brk", "vid": visitor, "ev": [
                {"evt": "viewExp", "exps": ["E1"], "vars": ["1"]},
                {"evt": "hitGoal", "goals": [100], "exps": ["E1"], "vars": ["1"]}]}  # fmt: skip
            req = urllib.request.Request(
                self.base + "/track",
                data=json.dumps(body).encode(),
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "switch-requests"},
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    self.answers[visitor] = resp.status
            except urllib.error.HTTPError as exc:
                self.answers[visitor] = exc.code
            except OSError:
                self.answers[visitor] = 0
            n += 1
            ahead = start + n / self.rate - time.monotonic()
            if ahead > 0:
                self._stop.wait(ahead)

    def accepted(self) -> set[str]:
        return {v for v, status in dict(self.answers).items() if 200 <= status < 300}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=90)


@pytest.mark.timeout(600)  # one rescale with a broker restart: about 60 s
def test_broker_restart_while_the_edge_switches_its_sender(
    tmp_path, dedicated_broker, clickhouse_server, ch_database, unique_name
):
    bootstrap = dedicated_broker.bootstrap
    env = pipeline_env(bootstrap, clickhouse_server, ch_database, unique_name, FROM)
    pipe = Pipeline(tmp_path, env, clickhouse_server, workers=1)
    rescale: subprocess.Popen[str] | None = None
    requests: _Requests | None = None
    try:
        pipe.start()
        assert pipe.edge is not None
        edge = pipe.edge
        requests = _Requests(pipe.base)
        wait_for("rows from the first generation", lambda: pipe.backend.query(
            "SELECT count() FROM events_raw")[0][0] > 20, 120)  # fmt: skip
        # the edge paused while the rescale writes the switch; the broker goes down; the edge resumes with
        # the broker away (what it accepts waits in its old sender, or is answered 503)
        edge.p.send_signal(signal.SIGSTOP)
        try:
            rescale = _popen(["-m", "trackpipe.cli", *RESCALE], env, tmp_path)
            wait_phase(bootstrap, pipe.layout_topic, "switching")
            dedicated_broker.halt()
            answered = len(requests.answers)
        finally:
            edge.p.send_signal(signal.SIGCONT)
        # the edge answers (or holds) requests with the broker away; the switch reaches it as the broker
        # comes back, while its old sender is still retrying what it accepted meanwhile
        wait_for("a request answered during the outage", lambda: len(requests.answers) > answered, 60)
        dedicated_broker.restart()
        switching = b"switching the edge to generation 1"
        wait_for("the edge switching", lambda: switching in edge.log_path.read_bytes(), 60)
        out = rescale.communicate(timeout=400)[0]
        assert rescale.returncode == 0, out
        _report(out)
        assert phases(bootstrap, pipe.layout_topic)[-1] == "stable"
        requests.stop()
        for proc in pipe.procs():
            assert proc.p.poll() is None, proc.tail()
        accepted = requests.accepted()
        assert len(accepted) > 50, requests.answers
        # every request answered 2xx: its two events in the generations' events topics once each ...
        produced: dict[str, list[str]] = {}
        for topic, partitions in [(pipe.events_topic_of(0), FROM), (pipe.events_topic_of(1), TO)]:
            for e in asyncio.run(events_of(bootstrap, topic, partitions)):
                produced.setdefault(e.visitor_id, []).append(e.event_id)
        assert sum(map(len, produced.values())) == len({i for ids in produced.values() for i in ids})
        assert {v for v in accepted if len(produced.get(v, [])) != 2} == set()
        # ... and in events_raw exactly once each
        stored: dict[str, tuple[int, int]] = {}

        def all_stored() -> bool:
            rows = pipe.backend.query(
                "SELECT visitor_id, count(), uniqExact(event_id) FROM events_raw FINAL"
                " WHERE project_id = 'brk' GROUP BY visitor_id"
            )
            stored.clear()
            stored.update({v: (int(n), int(u)) for v, n, u in rows})
            return all(v in stored for v in produced)

        wait_for("every produced event stored", all_stored, 180)
        assert {v: stored[v] for v in produced if stored[v] != (2, 2)} == {}
        assert stored.keys() == produced.keys()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pipe.logs()}") from None
    finally:
        if requests is not None:
            requests.stop()
        if rescale is not None and rescale.poll() is None:
            rescale.kill()
            rescale.communicate()
        pipe.stop()
