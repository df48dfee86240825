"""The public conversion stream from ``trackpipe run`` (issue 14): every conversion change as a
CloudEvent over Server-Sent Events, in order, resumable with Last-Event-ID with no gap and no duplicate;
every message valid against the JSON Schema served by the edge."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import jsonschema_rs
import orjson

from schemas.stream.schema_files import stored
from tests.integration.test_inputs_edge import ADMIN_KEY, AUTH
from tests.integration.test_outbound_embedded import _run, wait_for
from tests.scenario import free_port, http
from tests.stream_client import SseError, SseEvent, read_events

SCHEMA = jsonschema_rs.validator_for(orjson.loads(stored("conversion/v1")))
BEARER = {"Authorization": f"Bearer {ADMIN_KEY}"}


def make_goal(base: str, name: str) -> dict[str, Any]:
    spec = {"goal": {"name": name, "goal_type": "purchase", "value": 10.0, "currency": "USD"}}
    status, goal = http("POST", base + "/api/v1/conversions/goals", json.dumps(spec).encode(), AUTH)
    assert status == 201, goal
    return goal


def stream_scenario(
    base: str, goal: dict[str, Any], seen: Callable[[], list[SseEvent]], timeout: float = 60
) -> list[str]:
    """Six conversions, then one that goes pending -> approved -> rejected (each step sent once the
    previous one is on the stream, so they are three changes). Returns the expected (order, change)
    sequence as ``order/change`` strings."""
    orders = [f"S-{i}" for i in range(6)]
    for order in orders:
        body = json.dumps({"value": 5, "currency": "USD", "order_id": order}).encode()
        assert http("POST", f"{base}/api/conversions/track/{goal['token']}", body)[0] == 200
    pb = f"{base}/pb/?vid=v-stream&goal={goal['id']}&tx=S-P"
    for n, step in enumerate(("&rev=1&status=pending", "&rev=30&status=approved", "&status=rejected"), 7):
        assert http("GET", pb + step)[0] == 200
        wait_for(f"{n} messages", lambda n=n: len(seen()) >= n, timeout)
    return [f"{o}/created" for o in orders] + ["S-P/created", "S-P/updated", "S-P/reversed"]


def check_messages(events: list[SseEvent], expected: list[str]) -> None:
    for e in events:
        assert e.data["specversion"] == "1.0" and e.data["type"] == e.event and e.data["id"]
        SCHEMA.validate(e.data["data"])
    got = [f"{e.data['data']['order_id']}/{e.event.rsplit('.', 1)[1]}" for e in events]
    # every change once; each conversion's changes in order (conversions of different visitors are
    # processed in parallel partitions: the stream's order between them is the order they were recorded)
    assert sorted(got) == sorted(expected)
    for order in {x.split("/")[0] for x in expected}:
        assert [x for x in got if x.startswith(order + "/")] == [
            x for x in expected if x.startswith(order + "/")
        ]
    assert len({e.id for e in events}) == len(events) and len({e.data["id"] for e in events}) == len(events)


def test_sse_delivers_every_change_in_order_and_resumes_without_gap(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _run(tmp_path, port, "run.log")
    stop = threading.Event()
    try:
        goal = make_goal(base, "Streamed")
        project = goal["project"]
        url = f"{base}/api/v1/stream?project={project}"
        assert http("GET", f"{base}/api/v1/schemas/conversion/v1")[1] == orjson.loads(stored("conversion/v1"))

        # a follower connected while it happens sees every change as it is recorded
        live: list[SseEvent] = []
        failed: list[BaseException] = []

        def follow() -> None:
            try:
                read_events(url + "&from=earliest", BEARER, 9, 120, live, stop)
            except BaseException as exc:  # reported by the test below
                failed.append(exc)

        follower = threading.Thread(target=follow)
        follower.start()

        def seen() -> list[SseEvent]:
            if failed:
                raise AssertionError(f"the follower failed: {failed[0]!r}")
            return live

        expected = stream_scenario(base, goal, seen)
        follower.join(30)
        assert not failed, failed
        check_messages(live, expected)
        assert [int(e.id) for e in live] == sorted(int(e.id) for e in live)

        # from the start, part of it, disconnect, resume with Last-Event-ID: the rest, nothing twice
        head = read_events(url + "&from=earliest", BEARER, 4)
        tail = read_events(url, {**BEARER, "Last-Event-ID": head[-1].id}, 5)
        assert [e.id for e in head + tail] == [e.id for e in live]
        assert [e.data for e in head + tail] == [e.data for e in live]

        # only some types
        only = read_events(f"{url}&from=earliest&types=com.trackpipe.conversion.reversed", BEARER, 1)
        assert [e.id for e in only] == [live[-1].id]

        # bad input: 4xx naming the problem
        for bad, code, needle in (
            (f"{url}&types=nope", 400, b"types"),
            (f"{base}/api/v1/stream", 400, b"project"),
            (f"{url}&from=yesterday", 400, b"from"),
            (f"{url}&other=1", 400, b"other"),
        ):
            try:
                read_events(bad, BEARER, 1, timeout=10)
            except SseError as exc:
                assert exc.status == code and needle in exc.body, (bad, exc.body)
            else:
                raise AssertionError(f"{bad} was not refused")
        for headers, code, needle in (
            ({**BEARER, "Last-Event-ID": "not-a-cursor"}, 400, b"invalid_cursor"),
            ({}, 401, b"error"),
        ):
            try:
                read_events(url, headers, 1, timeout=10)
            except SseError as exc:
                assert exc.status == code and needle in exc.body, exc.body
            else:
                raise AssertionError(f"{headers} was not refused")
        assert http("GET", f"{base}/api/v1/schemas/conversion/v9")[0] == 404
    finally:
        stop.set()
        assert proc.stop() == 0, proc.tail()
