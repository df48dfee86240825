"""Issue 11, defect 1 and 2 on a real full disk: `trackpipe run` with its data on a small tmpfs that the
test fills up and frees again. Every 2xx'd event is counted exactly once before and after a restart, every
503'd one at most once; ``/healthz`` is 503 while the disk is full and 200 again by itself once space
returns, without a restart."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.scenario import Proc, free_port, http

pytestmark = pytest.mark.integration

KEY = "full-disk-admin-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
PROJECT = "fulldisk"


@pytest.fixture
def small_fs(tmp_path: Path):
    if os.geteuid() != 0:  # CI runs as root; test_embedded_faults.py injects the same faults without it
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def send(base: str, goal: str, requests: int, per_request: int, tag: str) -> tuple[int, int]:
    """``requests`` POSTs of ``per_request`` transactions without id (each counts); returns the events
    (acknowledged, refused with 503 not_durable)."""
    acked = refused = 0
    for i in range(requests):
        ev = [{"evt": "tr", "goals": [goal], "r": 1, "prc": 1} for _ in range(per_request)]
        body = json.dumps({"cid": PROJECT, "pid": PROJECT, "vid": f"{tag}-{i}", "ev": ev}).encode()
        status, answer = http("POST", base + "/track", body, {"Content-Type": "application/json"})
        if status == 200:
            acked += per_request
        else:
            assert status == 503 and answer["error"]["code"] in ("not_durable", "overloaded"), answer
            refused += per_request
    return acked, refused


def counts(base: str) -> dict[str, int]:
    status, body = http("GET", f"{base}/api/v1/reports/top-events?project={PROJECT}", headers=AUTH)
    assert status == 200, body
    return {r["goal_id"]: r["conversions"] for r in body["rows"]}


def wait_until(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:  # the process may be busy; the condition is checked again
            last = exc
        if last and not isinstance(last, OSError):
            return last
        time.sleep(0.2)  # polling interval; the condition decides
    raise AssertionError(f"{what}: not reached within {timeout}s (last: {last!r})")


def fill(path: Path) -> int:
    """Write a ballast file until the filesystem is full; returns its size."""
    chunk = b"\0" * (256 * 1024)
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(4096):  # bounded: 1 GiB at most, far more than the 64 MiB filesystem
            try:
                size += os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        while True:  # the last bytes
            try:
                if not os.write(fd, b"\0" * 512):
                    break
                size += 512
            except OSError:
                break
    finally:
        os.close(fd)
    return size


def test_acknowledged_events_survive_a_full_disk_and_processing_resumes(small_fs, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"TRACKPIPE_ADMIN_KEY": KEY}
    args = ["run", "--port", str(port), "--data-dir", str(small_fs / "data")]
    proc = Proc(args, env, tmp_path / "run.log")
    try:
        proc.wait_healthy(base)
        assert send(base, "before", 10, 20, "b") == (200, 0)
        wait_until(lambda: counts(base) == {"before": 200}, "events before the disk fills are stored")

        ballast = small_fs / "ballast"
        size = fill(ballast)
        os.truncate(ballast, size - 384 * 1024)  # a little room: some appends fit, one is cut short
        acked_during, refused_during = send(base, "during", 40, 50, "d")
        assert acked_during > 0 and refused_during > 0, (acked_during, refused_during)

        def unhealthy() -> Any:
            status, body = http("GET", base + "/healthz")
            return status == 503 and body

        body = wait_until(unhealthy, "/healthz says the disk is full")
        assert body["problems"], body

        ballast.unlink()  # space returns: no restart, no operator
        wait_until(lambda: http("GET", base + "/healthz")[0] == 200, "/healthz ok again", timeout=90)
        acked_after, refused_after = send(base, "after", 10, 20, "a")
        assert (acked_after, refused_after) == (200, 0)

        def settled() -> Any:
            found = counts(base)
            return found.get("after") == 200 and found

        found = wait_until(settled, "events after the disk was freed are stored", timeout=90)
        assert found["before"] == 200
        assert acked_during <= found.get("during", 0) <= acked_during + refused_during
        before_restart = found
    finally:
        assert proc.stop() == 0, proc.tail()

    proc = Proc(args, env, tmp_path / "run2.log")
    try:
        proc.wait_healthy(base)
        assert counts(base) == before_restart  # the restart changes nothing: nothing lost or doubled
        assert before_restart.get("during", 0) >= acked_during
    finally:
        assert proc.stop() == 0, proc.tail()
