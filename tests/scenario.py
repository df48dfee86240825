"""The spine scenario (issue 2) and helpers to run trackpipe processes for integration tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.envelope import encode_envelope
from schemas.events import Event, EventType
from schemas.ids import new_event_id
from schemas.partitioning import partition_for
from tests.integration.test_edge_convert import REF_JSON, REF_QUERY

LEGACY_TX = "/track/?c=12345&p=12345&e=ABCD-12345&t=777|ORDER-1|10.50|1"

EXPECTED_ROWS = [
    # goal 12345: the hitGoal (once per visitor; the GET repeats it) + the tr without transaction id
    {"goal_id": "12345", "conversions": 2, "converters": 1, "conversion_rate": 0.5, "revenue": 123.23},
    # goal 777: the legacy transaction, sent twice, counted once (anonymous visitor from IP + UA)
    {"goal_id": "777", "conversions": 1, "converters": 1, "conversion_rate": 0.5, "revenue": 10.5},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=body,
        method=method,
        headers={"User-Agent": "trackpipe-tests", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``trackpipe <args>`` run to completion with ``env`` added; its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "trackpipe.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    out = cli(args, env, cwd)
    assert out.returncode == 0, f"trackpipe {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def send_scenario(base: str) -> None:
    for method, path, body in [
        ("POST", "/track", json.dumps(REF_JSON).encode()),
        ("GET", "/track?" + REF_QUERY, None),
        ("GET", LEGACY_TX, None),
        ("GET", LEGACY_TX, None),
    ]:
        headers = {"Content-Type": "application/json"} if body else {}
        status, answer = http(method, base + path, body, headers)
        assert status == 200, (path, status, answer)


def wait_report(
    base: str,
    project: str,
    expected_rows: list[dict[str, Any]],
    timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Top-5 report of ``project`` once its rows are ``expected_rows`` (``headers``: e.g. the key)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, last = http("GET", f"{base}/api/v1/reports/top-events?project={project}", headers=headers)
        if status == 200 and last["rows"] == expected_rows:
            return last  # type: ignore[no-any-return]
        time.sleep(0.3)
    raise AssertionError(f"report never became {expected_rows}; last answer: {last}")


class Proc:
    """A trackpipe subprocess with its output in a file, stopped by signal."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None):
        self.log_path = log_path
        self._log = open(log_path, "ab")
        if args[:1] == ["worker"] and "TRACKPIPE_DATA_DIR" not in env:
            # each worker its own data directory, as deployed (a RocksDB worker refuses a shared one)
            env = {**env, "TRACKPIPE_DATA_DIR": str(log_path.parent / f"{log_path.stem}-data")}
        self.p = subprocess.Popen(
            [sys.executable, "-m", "trackpipe.cli", *args],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd or log_path.parent,
        )

    def wait_healthy(self, base: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise AssertionError(f"process exited {self.p.returncode}:\n{self.tail()}")
            try:
                if http("GET", base + "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not healthy within {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()
        return self.p.returncode


def event(type_: EventType, at: datetime, visitor: str, project: str = "p", **kw: Any) -> Event:
    """A canonical event of ``project`` (account = project) that occurred and was received at ``at``."""
    return Event(
        event_id=new_event_id(),
        type=type_,
        received_at=at,
        occurred_at=at,
        account_id=project,
        project_id=project,
        visitor_id=visitor,
        **kw,
    )


def faust_test_options(datadir: Path) -> dict[str, Any]:
    """Faust settings for an app run in-process by a test on the single-node test broker."""
    return {
        "topic_replication_factor": 1,
        "broker_session_timeout": 10,
        "broker_heartbeat_interval": 1,
        "datadir": str(datadir),
        "autodiscover": False,
    }


async def create_topics(bootstrap: str, topics: list[str], partitions: int) -> None:
    """Create ``topics`` (each with ``partitions``, replication 1) on the test broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()


async def produce_events(
    bootstrap: str, topic: str, events: list[Event], partitions: int, per_record: int
) -> None:
    """Send ``events`` as the edge would: to their visitor's partition, ``per_record`` per envelope."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        by_part: dict[int, list[Event]] = {}
        for e in events:
            by_part.setdefault(partition_for(e.visitor_id, partitions), []).append(e)
        for part, evs in by_part.items():
            for i in range(0, len(evs), per_record):
                chunk = encode_envelope(evs[i : i + per_record])
                await producer.send_and_wait(topic, chunk, partition=part)
    finally:
        await producer.stop()
