"""`trackpipe cluster up`'s pure parts: the processes it plans, the ports it checks, what it logs where.

The whole command (servers, edges on one port, workers, stop) is tests/integration/test_cluster.py."""

from __future__ import annotations

import io
import socket
from datetime import datetime
from pathlib import Path

from honcho.printer import Message

from trackpipe.cluster import (
    ClusterPorts,
    _tee_printer,
    busy_ports,
    check_partitions,
    duplicate_ports,
    plan_processes,
    procfile_text,
    shared_environment,
)

PORTS = ClusterPorts(18080, 19092, 19093, 18123, 19000, 19465)


def test_edges_share_the_port_and_each_worker_gets_its_own_port_and_dirs(tmp_path: Path) -> None:
    shared = shared_environment("127.0.0.1", PORTS, partitions=4)
    specs = plan_processes(procfile_text("127.0.0.1", 18080), 3, 2, shared, tmp_path, 19465)
    assert [s.name for s in specs] == ["edge.1", "edge.2", "edge.3", "worker.1", "worker.2"]
    edges, workers = specs[:3], specs[3:]
    assert len({e.cmd for e in edges}) == 1
    assert edges[0].cmd.endswith("edge --host 127.0.0.1 --port 18080 --reuse-port")
    assert all(w.cmd.endswith("-m trackpipe.cli worker") for w in workers)
    assert [w.env["TRACKPIPE_WORKER_METRICS_PORT"] for w in workers] == ["19465", "19466"]
    assert [w.cwd for w in workers] == [tmp_path / "workers" / "worker.1", tmp_path / "workers" / "worker.2"]
    assert [w.env["TRACKPIPE_DATA_DIR"] for w in workers] == [str(w.cwd) for w in workers]
    for spec in specs:
        assert spec.env["TRACKPIPE_KAFKA_BOOTSTRAP"] == "127.0.0.1:19092"
        assert spec.env["TRACKPIPE_CLICKHOUSE_PORT"] == "18123"
        assert spec.env["HONCHO_PROCESS_NAME"] == spec.name
    no_metrics = plan_processes(procfile_text("127.0.0.1", 18080), 1, 2, shared, tmp_path, 0)
    assert [s.env["TRACKPIPE_WORKER_METRICS_PORT"] for s in no_metrics[1:]] == ["0", "0"]


def test_a_port_in_use_or_given_twice_is_named() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        busy = busy_ports("127.0.0.1", [("edge", taken), ("kafka", free)])
    assert len(busy) == 1 and busy[0].startswith(f"edge port {taken}:")
    assert duplicate_ports(PORTS.named(2)) == []
    clash = ClusterPorts(18080, 19092, 19093, 18123, 19000, 18079)  # worker.2 metrics = edge port
    assert duplicate_ports(clash.named(2)) == ["18080 (edge and worker.2 metrics)"]


def test_the_partition_count_of_a_data_dir_is_kept(tmp_path: Path) -> None:
    assert check_partitions(tmp_path, 4) is None
    assert check_partitions(tmp_path, 4) is None
    problem = check_partitions(tmp_path, 6)
    assert problem is not None and "have 4 partitions, not 6" in problem


def test_each_process_logs_to_its_own_file_and_the_console(tmp_path: Path) -> None:
    console = io.StringIO()
    printer = _tee_printer(console, tmp_path)
    at = datetime(2026, 1, 2, 3, 4, 5)
    printer.write(Message("line", b"listening\n", at, "edge.1", None))
    printer.write(Message("line", b"joined\nassigned\n", at, "worker.2", None))
    printer.system("edge.1 stopped (rc=0)")
    printer.close()
    assert (tmp_path / "edge.1.log").read_text() == "2026-01-02 03:04:05 listening\n"
    assert (tmp_path / "worker.2.log").read_text().splitlines() == [
        "2026-01-02 03:04:05 joined",
        "2026-01-02 03:04:05 assigned",
    ]
    assert (tmp_path / "cluster.log").read_text().endswith(" edge.1 stopped (rc=0)\n")
    assert "edge.1 | listening" in console.getvalue() and "system | edge.1 stopped" in console.getvalue()
