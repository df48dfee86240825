"""Issue 11: a disk error at any write point of the embedded mode (log append and fsync, SQLite commit,
chdb insert, dead-letter append) loses no acknowledged event, does not stop the runner, is shown by
``/healthz`` (503) while processing cannot advance, and processing resumes by itself afterwards.

The faults are injected into the real components (real local log, SQLite, chdb) at the call that fails on
a full disk; ``test_embedded_full_disk.py`` fills a real filesystem instead."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sinks.backend import BackendError
from sinks.chdb_backend import ChdbBackend
from trackpipe.embedded import RUNNER, build_embedded_app
from trackpipe.settings import Settings

pytestmark = pytest.mark.integration

KEY = "fault-test-admin-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
UA = {"User-Agent": "pytest-faults"}
PROJECT = "faults"


class Fault:
    """A switch the patched write points consult."""

    armed = False
    hits = 0

    def check(self, what: str) -> None:
        if self.armed:
            self.hits += 1
            raise_for(what)


def raise_for(what: str) -> None:
    if what == "sqlite_commit":
        raise sqlite3.OperationalError("database or disk is full")
    if what == "chdb_insert":
        raise BackendError(
            "insert failed: Code: 243. DB::Exception: NOT_ENOUGH_SPACE", retriable=True, code=243
        )
    raise OSError(28, "No space left on device")


def inject(monkeypatch: pytest.MonkeyPatch, app: Any, point: str, fault: Fault) -> None:
    if point == "sqlite_commit":
        state = app[RUNNER].batches.port.pipeline.state
        conn = state.conn

        class RefusingCommit:  # COMMIT on a full disk: the batch's writes are made, then refused
            def __getattr__(self, name: str) -> Any:
                return getattr(conn, name)

            def commit(self) -> None:
                fault.check(point)
                conn.commit()

        monkeypatch.setattr(state, "conn", RefusingCommit())
    elif point == "chdb_insert":
        real_insert = ChdbBackend.insert_arrow

        def insert_arrow(self: ChdbBackend, *args: Any, **kw: Any) -> Any:
            fault.check(point)
            return real_insert(self, *args, **kw)

        monkeypatch.setattr(ChdbBackend, "insert_arrow", insert_arrow)
    elif point == "deadletter_append":
        dl = app[RUNNER].deadletter
        real_append = dl.append_many

        def append_many(records: list[tuple[int, bytes]]) -> list[int]:
            fault.check(point)
            return real_append(records)

        monkeypatch.setattr(dl, "append_many", append_many)
    elif point in ("log_write", "log_fsync"):
        log = app[RUNNER].log
        real_write, real_fsync = os.write, os.fsync

        def write(fd: int, data: Any) -> int:
            if point == "log_write" and fd == log._fd and fault.armed:
                real_write(fd, bytes(data)[: len(data) // 2])
                fault.check(point)
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            if point == "log_fsync" and fd == log._fd:
                fault.check(point)
            real_fsync(fd)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)
    else:
        raise AssertionError(point)


async def track(client: TestClient, goal: str, n: int, tag: str) -> tuple[int, int]:
    """``n`` transactions without transaction id (each one counts: a duplicate would show); returns
    (acknowledged, refused with 503)."""
    ok = refused = 0
    for i in range(n):
        body = {
            "cid": PROJECT,
            "pid": PROJECT,
            "vid": f"{tag}-{i}",
            "ev": [{"evt": "tr", "goals": [goal], "r": 1}],
        }
        resp = await client.post("/track", json=body, headers=UA)
        if resp.status == 200:
            ok += 1
        else:
            assert resp.status == 503, await resp.text()
            assert resp.headers["Retry-After"]
            assert (await resp.json())["error"]["code"] == "not_durable"
            refused += 1
    return ok, refused


async def conversions(client: TestClient) -> dict[str, int]:
    resp = await client.get(f"/api/v1/reports/top-events?project={PROJECT}", headers=AUTH)
    assert resp.status == 200, await resp.text()
    return {r["goal_id"]: r["conversions"] for r in (await resp.json())["rows"]}


async def wait_for(predicate: Any, what: str, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(0.1)  # polling interval; the condition decides
    raise AssertionError(f"{what}: not reached in {within}s (last: {last!r})")


async def health(client: TestClient) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/healthz")
    return resp.status, await resp.json()


def settings(tmp: Path) -> Settings:
    return Settings(data_dir=tmp / "data", admin_key=KEY)  # type: ignore[arg-type]


@pytest.mark.parametrize("point", ["sqlite_commit", "chdb_insert", "deadletter_append"])
async def test_processing_survives_a_disk_error_and_resumes_by_itself(tmp_path, monkeypatch, point):
    app = build_embedded_app(settings(tmp_path))
    fault = Fault()
    async with TestClient(TestServer(app)) as client:
        assert (await track(client, "before", 5, "b")) == (5, 0)
        await wait_for(lambda: _equals(client, {"before": 5}), "first batch stored")
        # stored is not yet committed (the runner commits after the write and a new project's counters
        # mark): the fault must hit the next batch, not this one's commit
        runner = app[RUNNER]
        await wait_for(lambda: _true(runner.position >= runner.log.end_offset), "first batch committed")
        inject(monkeypatch, app, point, fault)
        fault.armed = True
        if point == "deadletter_append":  # a record the runner must dead-letter rides in the same batch
            app[RUNNER].log.append_many([(0, b"not an envelope")])
        assert (await track(client, "during", 7, "d")) == (7, 0)  # the log is fine: durable, 200

        async def unhealthy() -> Any:
            status, body = await health(client)
            return status == 503 and body

        body = await wait_for(unhealthy, "healthz reports the stalled runner")
        assert any("stalled" in p for p in body["problems"]), body
        assert fault.hits >= 1 and app[RUNNER].running()
        seen = fault.hits
        await wait_for(lambda: _true(fault.hits > seen), "the runner retries by itself")
        # the batch is retried from the committed state: its rows are either not stored yet (the insert
        # failed) or stored once however often the retries write them again (the commit after it failed)
        expected_while_failing = {"before": 5} if point == "chdb_insert" else {"before": 5, "during": 7}
        assert await conversions(client) == expected_while_failing

        fault.armed = False  # space returns
        hits = float(fault.hits)
        await wait_for(lambda: _equals(client, {"before": 5, "during": 7}), "processing resumed")
        await wait_for(lambda: _status(client, 200), "healthz ok again")
        assert (await track(client, "after", 3, "a")) == (3, 0)
        await wait_for(lambda: _equals(client, {"before": 5, "during": 7, "after": 3}), "later events")
        metrics = await (await client.get("/metrics", headers=AUTH)).text()
        assert f'trackpipe_processing_batches_total{{result="retried",stage="embedded"}} {hits}' in metrics
        if point == "deadletter_append":
            assert [b'"raw":"not an envelope"' in r.payload for r in app[RUNNER].deadletter.read(0)][-1]
            undecodable = 'outcome="dead_letter",reason="undecodable",stage="embedded"} 1.0'
            assert undecodable in metrics
    monkeypatch.undo()
    # restart on the same data: every acknowledged event exactly once
    async with TestClient(TestServer(build_embedded_app(settings(tmp_path)))) as client:
        await wait_for(lambda: _status(client, 200), "healthy after restart")
        assert await conversions(client) == {"before": 5, "during": 7, "after": 3}


@pytest.mark.parametrize("point", ["log_write", "log_fsync"])
async def test_a_refused_append_is_answered_503_and_leaves_no_trace(tmp_path, monkeypatch, point):
    app = build_embedded_app(settings(tmp_path))
    fault = Fault()
    async with TestClient(TestServer(app)) as client:
        assert (await track(client, "before", 4, "b")) == (4, 0)
        inject(monkeypatch, app, point, fault)
        fault.armed = True
        assert (await track(client, "refused", 6, "r")) == (0, 6)
        fault.armed = False
        assert (await track(client, "after", 5, "a")) == (5, 0)
        await wait_for(lambda: _equals(client, {"before": 4, "after": 5}), "acknowledged events stored")
    monkeypatch.undo()
    async with TestClient(TestServer(build_embedded_app(settings(tmp_path)))) as client:
        await wait_for(lambda: _status(client, 200), "healthy after restart")
        assert await conversions(client) == {"before": 4, "after": 5}


async def _equals(client: TestClient, expected: dict[str, int]) -> bool:
    return await conversions(client) == expected


async def _status(client: TestClient, status: int) -> bool:
    return (await health(client))[0] == status


async def _true(value: bool) -> bool:
    return value
