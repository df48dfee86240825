"""`trackpipe cluster up`: Kafka, ClickHouse, two edges on ONE port and two workers from one command.

The reference events (the README's, through tests/scenario.py) are sent to the one port and reach the
Top-5 report; both edges answered requests (each edge's access log, in its own log file, counts the
requests it served); SIGTERM stops every process the command started, exit 0, every port free again.
A second `up` on the same data dir finds the topics, the schema and the report's rows still there, and
when one of its edges dies the command stops everything else and exits non-zero. A third one, killed
with SIGKILL, takes its servers, edges and workers with it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.scenario import EXPECTED_ROWS, http, send_scenario, wait_report
from trackpipe.devservers.ports import pick_free_ports

START_TIMEOUT_S = 90


def metrics_base() -> int:
    """A port p with p and p + 1 free (the workers' /metrics)."""
    for port in pick_free_ports(20):
        if port < 65535 and not busy(port + 1):
            return port
    raise AssertionError("no two consecutive free ports")


def busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time, state) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry)] = (int(fields[1]), fields[19], fields[0])
    return table


def descendants(root: int) -> dict[int, str]:
    """pid -> start time of every living process under ``root``."""
    table = process_table()
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, started, state) in table.items():
            if ppid == parent and pid not in found and state != "Z":
                found[pid] = started
                todo.append(pid)
    return found


def listening_pids(port: int) -> set[int]:
    """The processes holding a listening TCP socket on 127.0.0.1:``port`` (/proc/net/tcp + fds)."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{fields[9]}]")
    owners = set()
    for pid in process_table():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    owners.add(pid)
            except OSError:
                continue
    return owners


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def still_running(processes: dict[int, str]) -> list[str]:
    table = process_table()
    return [
        f"{pid} {cmdline(pid)}"
        for pid, started in processes.items()
        if pid in table and table[pid][1] == started and table[pid][2] != "Z"
    ]


class Cluster:
    """``trackpipe cluster up`` as a subprocess, its console output in a file."""

    def __init__(self, tmp: Path, ports: dict[str, int], env: dict[str, str], run: int) -> None:
        self.ports = ports
        self.data = tmp / "data"
        self.out_path = tmp / f"cluster-{run}.out"
        self._out = open(self.out_path, "wb")
        args = [
            "--edges", "2", "--workers", "2", "--data-dir", str(self.data), "--port", str(ports["edge"]),
            "--kafka-port", str(ports["kafka"]), "--kafka-controller-port", str(ports["controller"]),
            "--clickhouse-port", str(ports["ch_http"]), "--clickhouse-tcp-port", str(ports["ch_tcp"]),
            "--metrics-port", str(ports["metrics"]), "--partitions", "2",
        ]  # fmt: skip
        self.p = subprocess.Popen(
            [sys.executable, "-m", "trackpipe.cli", "cluster", "up", *args],
            env={**os.environ, **env},
            cwd=tmp,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.base = f"http://127.0.0.1:{ports['edge']}"

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.p.poll() is None, f"cluster exited {self.p.returncode}:\n{self.output()[-6000:]}"
            try:
                if http("GET", self.base + "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"no healthy edge within {START_TIMEOUT_S}s:\n{self.output()[-6000:]}")

    def started(self, name: str) -> int:
        """The pid honcho reported for process ``name`` (``edge.1``)."""
        found = re.search(rf"\| {re.escape(name)} started \(pid=(\d+)\)", self.output())
        assert found, f"{name} never started:\n{self.output()[-6000:]}"
        return int(found.group(1))

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            return self.p.wait(timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        """Clean-up after a failed test: SIGTERM, then SIGKILL of what is left."""
        if self.p.poll() is None:
            left = descendants(self.p.pid)
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
            for pid in left:
                if still_running({pid: left[pid]}):
                    os.kill(pid, signal.SIGKILL)
        self._out.close()


def wait_for(condition, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"never: {what}")


def requests_served(log: Path, marker: str) -> int:
    return log.read_text(errors="replace").count(marker) if log.exists() else 0


def ports_in_use(cluster: Cluster) -> list[str]:
    ports = {**cluster.ports, "metrics 2": cluster.ports["metrics"] + 1}
    return [f"{name} {port}" for name, port in ports.items() if busy(port)]


def assert_all_gone(cluster: Cluster, tree: dict[int, str]) -> None:
    assert still_running(tree) == [], cluster.output()[-4000:]
    assert ports_in_use(cluster) == [], cluster.output()[-4000:]


def test_cluster_up_two_edges_on_one_port_two_workers_and_a_clean_stop(tmp_path):
    edge, kafka, controller, ch_http, ch_tcp = pick_free_ports(5)
    ports = dict(edge=edge, kafka=kafka, controller=controller, ch_http=ch_http, ch_tcp=ch_tcp)
    ports["metrics"] = metrics_base()
    suffix = uuid.uuid4().hex[:8]
    env = {  # settings the cluster passes through to its processes (the servers are its own)
        "TRACKPIPE_KAFKA_TOPIC": f"cluster-{suffix}",
        "TRACKPIPE_CLICKHOUSE_DATABASE": f"cluster_{suffix}",
        "TRACKPIPE_WORKER_APP_ID": f"cluster-worker-{suffix}",
        "TRACKPIPE_WORKER_BATCH_WITHIN_S": "0.2",
        "TRACKPIPE_EDGE__ACCESS_LOG": "true",  # each edge logs the requests it served
    }

    # ---- first up: fresh data dir -------------------------------------------------------------
    cluster = Cluster(tmp_path, ports, env, run=1)
    try:
        cluster.wait_healthy()
        out = cluster.output()
        assert f"topics cluster-{suffix}.*: created (2 partitions)" in out
        assert f"database cluster_{suffix}: applied events_raw" in out
        edge_pids = [cluster.started("edge.1"), cluster.started("edge.2")]
        worker_pids = [cluster.started("worker.1"), cluster.started("worker.2")]
        tree = descendants(cluster.p.pid)
        for pid in edge_pids:
            assert pid in tree and "trackpipe.cli edge" in cmdline(pid) and "--reuse-port" in cmdline(pid)
        for pid in worker_pids:
            assert pid in tree and "trackpipe.cli worker" in cmdline(pid)
        assert any("kafka.Kafka" in cmdline(pid) for pid in tree), "no Kafka broker under the cluster"
        assert any("clickhouse_proc" in cmdline(pid) for pid in tree), "no ClickHouse under the cluster"

        send_scenario(cluster.base)
        report = wait_report(cluster.base, "12345", EXPECTED_ROWS, timeout=90)
        assert report["visitors"] == 2

        # one port, two edges: each holds its own listening socket on it, and fresh connections (one per
        # request) are spread over them by the kernel
        wait_for(lambda: listening_pids(ports["edge"]) == set(edge_pids), "both edges listen on the port")
        marker = f"probe-{suffix}"
        for _ in range(40):
            assert http("GET", cluster.base + "/healthz", headers={"User-Agent": marker})[0] == 200
        logs = [cluster.data / "logs" / "edge.1.log", cluster.data / "logs" / "edge.2.log"]

        def probes_logged() -> list[int] | None:
            counts = [requests_served(log, marker) for log in logs]
            return counts if sum(counts) == 40 else None

        served = wait_for(probes_logged, "the edges' logs count the 40 probes")
        assert min(served) >= 1, f"one edge served all 40 requests: {served}"
        # each worker serves its own /metrics
        for port in (ports["metrics"], ports["metrics"] + 1):
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass

        tree = descendants(cluster.p.pid)  # everything started by now (servers, shells, runners)
        cluster.p.send_signal(signal.SIGTERM)
        assert cluster.wait_exit() == 0, cluster.output()[-6000:]
        assert "processes stopped (requested)" in cluster.output()
        assert_all_gone(cluster, tree)
    finally:
        cluster.kill()

    # ---- second up: same data dir, the data is still there; an edge dying stops the lot ----------
    cluster = Cluster(tmp_path, ports, env, run=2)
    try:
        cluster.wait_healthy()
        out = cluster.output()
        assert f"topics cluster-{suffix}.*: exist" in out and "applied nothing (up to date)" in out
        status, report = http("GET", f"{cluster.base}/api/v1/reports/top-events?project=12345")
        assert status == 200 and report["rows"] == EXPECTED_ROWS
        for name in ("edge.1", "edge.2", "worker.1", "worker.2"):
            cluster.started(name)
        tree = descendants(cluster.p.pid)
        os.kill(cluster.started("edge.2"), signal.SIGKILL)
        assert cluster.wait_exit() == 1, cluster.output()[-6000:]
        assert "processes stopped (edge.2 exited)" in cluster.output()
        assert_all_gone(cluster, tree)
    finally:
        cluster.kill()

    # ---- third up: killed outright (SIGKILL, no clean-up of its own): its processes die with it -----
    cluster = Cluster(tmp_path, ports, env, run=3)
    try:
        cluster.wait_healthy()
        for name in ("edge.1", "edge.2", "worker.1", "worker.2"):
            cluster.started(name)
        tree = descendants(cluster.p.pid)
        cluster.p.kill()
        assert cluster.wait_exit() == -signal.SIGKILL
        wait_for(lambda: not still_running(tree), "every process of the killed cluster gone")
        wait_for(lambda: not ports_in_use(cluster), "the ports free again")
        # what a killed `up` cannot clean: the ClickHouse server's temp work dir (config, log; no data)
        workdir = re.search(r"clickhouse: .*; log (\S+)/server\.log\)", cluster.output())
        assert workdir, cluster.output()[-4000:]
        shutil.rmtree(workdir.group(1))
    finally:
        cluster.kill()
