"""Goal webhooks through Kafka + ``trackpipe worker`` (issue 13, distributed): the worker's planner reads
``<events>.conversions``, the due deliveries live in the compacted ``<events>.deliveries`` topic, and the
worker's delivery loop sends them to a real receiver on 127.0.0.1. SIGKILL of a worker with deliveries
pending loses none, and each webhook-id keeps one body."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.test_inputs_edge import ADMIN_KEY, AUTH, REF_PVTLNK
from tests.integration.test_outbound_admin import GoneReceiver, _endpoints, _list
from tests.integration.test_outbound_embedded import SCHEDULE, Receiver, _goal, _verified, wait_for
from tests.outbound_scenario import check_deliveries, log_settled, send_outbound_scenario
from tests.scenario import Proc, free_port, http, run_cli


def _env(kafka_bootstrap: str, clickhouse_server: Any, ch_database: str, unique_name: Any) -> dict[str, str]:
    return {
        "TRACKPIPE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRACKPIPE_KAFKA_TOPIC": unique_name("events"),
        "TRACKPIPE_PARTITIONS": "3",
        "TRACKPIPE_CLICKHOUSE_HOST": clickhouse_server.host,
        "TRACKPIPE_CLICKHOUSE_PORT": str(clickhouse_server.http_port),
        "TRACKPIPE_CLICKHOUSE_DATABASE": ch_database,
        "TRACKPIPE_WORKER_APP_ID": unique_name("worker"),
        "TRACKPIPE_WORKER_BATCH_WITHIN_S": "0.2",
        "TRACKPIPE_WORKER_METRICS_PORT": "0",
        "TRACKPIPE_ADMIN_KEY": ADMIN_KEY,
        "TRACKPIPE_OUTBOUND__ALLOW_NETWORKS": "127.0.0.0/8",
        "TRACKPIPE_OUTBOUND__RETRY_SCHEDULE_S": SCHEDULE,
        "TRACKPIPE_OUTBOUND__TIMEOUT_S": "5",
    }


def _prepare(env: dict[str, str], tmp_path: Path) -> None:
    assert "created" in run_cli(["topics", "create"], env, tmp_path)
    run_cli(["migrate"], env, tmp_path)


@contextlib.contextmanager
def pipeline(tmp_path: Path, env: dict[str, str], receiver: Receiver | None = None) -> Iterator[str]:
    """``trackpipe edge`` + ``trackpipe worker`` on ``env``; yields the edge's base URL. An assertion
    that fails inside gets both logs appended; both processes (and ``receiver``) are stopped after."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc(["edge", "--port", str(port)], env, tmp_path / "edge.log")
    worker = Proc(["worker"], env, tmp_path / "worker.log")
    try:
        edge.wait_healthy(base)
        yield base
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- edge ---\n{edge.tail()}\n--- worker ---\n{worker.tail()}") from None
    finally:
        edge.stop()
        worker.stop()
        if receiver is not None:
            receiver.close()


def _orders(goal: dict[str, Any], receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    by_order: dict[str, list[dict[str, Any]]] = {}
    for h, b in receiver.on("/hook"):
        event = _verified(goal, h, b)
        by_order.setdefault(event["order_id"], []).append(event)
    return by_order


def test_goal_webhooks_through_kafka_and_a_worker(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = _env(kafka_bootstrap, clickhouse_server, ch_database, unique_name)
    _prepare(env, tmp_path)
    receiver = Receiver(free_port(), fail={"/flaky": 2})
    receiver.up()
    with pipeline(tmp_path, env, receiver) as base:
        goal = _goal(base, f"http://127.0.0.1:{receiver.port}/hook", "Sales")
        track = f"{base}/api/conversions/track/{goal['token']}"
        assert http("POST", track, json.dumps(REF_PVTLNK).encode())[0] == 200
        [sent] = wait_for("conversion.tracked", lambda: _orders(goal, receiver).get("ORDER-12345"), 120)
        assert sent["event"] == "conversion.tracked" and sent["value"] == 99.99
        assert sent["goal_id"] == goal["id"] and sent["currency"] == "USD"

        # FunnelFlux: pending -> approved -> the same again (nothing) -> rejected
        pb = f"{base}/pb/?vid=ff-visitor&goal={goal['id']}&tx=ORD-7"
        assert http("GET", pb + "&rev=10&status=pending")[0] == 200
        wait_for("pending", lambda: len(_orders(goal, receiver).get("ORD-7", [])) == 1)
        assert http("GET", pb + "&rev=25&status=approved")[0] == 200
        wait_for("approved", lambda: len(_orders(goal, receiver).get("ORD-7", [])) == 2)
        assert http("GET", pb + "&rev=25&status=approved")[0] == 200
        assert http("GET", pb + "&status=rejected")[0] == 200
        events = wait_for("rejected", lambda: (e := _orders(goal, receiver).get("ORD-7", []))[2:] and e)
        assert [e["event"] for e in events] == [
            "conversion.tracked",
            "conversion.updated",
            "conversion.reversed",
        ]
        assert events[1]["value"] == 25 and events[1]["status"] == "approved"

        # a receiver answering 500 twice: the third attempt delivers the same id and body
        flaky = _goal(base, f"http://127.0.0.1:{receiver.port}/flaky", "Flaky")
        body = json.dumps({"value": 5, "currency": "EUR", "order_id": "FLAKY-1"}).encode()
        assert http("POST", f"{base}/api/conversions/track/{flaky['token']}", body)[0] == 200
        attempts = wait_for("three attempts", lambda: receiver.on("/flaky")[2:] and receiver.on("/flaky"))
        assert len({h["webhook-id"] for h, _ in attempts}) == 1 and len({b for _, b in attempts}) == 1
        # a sentinel conversion planned after the duplicate: no fourth event for ORD-7 came before it
        body = json.dumps({"value": 1, "currency": "USD", "order_id": "LAST"}).encode()
        assert http("POST", track, body)[0] == 200
        wait_for("the sentinel", lambda: _orders(goal, receiver).get("LAST"))
        assert len(_orders(goal, receiver)["ORD-7"]) == 3
        assert len(receiver.on("/flaky")) == 3


def test_sigkill_of_a_worker_with_deliveries_pending_loses_none(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = _env(kafka_bootstrap, clickhouse_server, ch_database, unique_name)
    _prepare(env, tmp_path)
    receiver = Receiver(free_port())  # down until the second worker runs
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    edge = Proc(["edge", "--port", str(port)], env, tmp_path / "edge.log")
    worker = Proc(["worker"], env, tmp_path / "worker1.log")
    orders = [f"KILL-{i}" for i in range(12)]
    second: Proc | None = None
    try:
        edge.wait_healthy(base)
        goal = _goal(base, f"http://127.0.0.1:{receiver.port}/hook", "Killed")
        track = f"{base}/api/conversions/track/{goal['token']}"
        for order in orders[:8]:
            body = json.dumps({"value": 10, "currency": "USD", "order_id": order}).encode()
            assert http("POST", track, body)[0] == 200
        # wait until the worker has attempted (and failed) deliveries against the receiver that is down
        wait_for(
            "failing attempts", lambda: "attempt" in worker.tail(200_000) and "failed" in worker.tail(), 120
        )
        for order in orders[8:]:  # accepted, maybe not yet processed when the worker dies
            body = json.dumps({"value": 10, "currency": "USD", "order_id": order}).encode()
            assert http("POST", track, body)[0] == 200
        worker.stop(signal.SIGKILL)

        second = Proc(["worker"], env, tmp_path / "worker2.log")
        receiver.up()

        def all_arrived() -> dict[str, set[bytes]] | None:
            by_id: dict[str, set[bytes]] = {}
            for h, b in receiver.on("/hook"):
                _verified(goal, h, b)
                by_id.setdefault(h["webhook-id"], set()).add(b)
            got = {json.loads(next(iter(bodies)))["order_id"] for bodies in by_id.values()}
            return by_id if got == set(orders) else None

        by_id = wait_for("every delivery", all_arrived, 180)
        assert len(by_id) == len(orders)  # one id per conversion
        assert all(len(bodies) == 1 for bodies in by_id.values())  # each id always with one body
    except AssertionError as exc:
        logs = f"--- worker 1 ---\n{worker.tail()}\n--- worker 2 ---\n{second.tail() if second else ''}"
        raise AssertionError(f"{exc}\n--- edge ---\n{edge.tail()}\n{logs}") from None
    finally:
        edge.stop()
        worker.stop()
        if second is not None:
            second.stop()
        receiver.close()


def test_the_outbound_scenario_through_kafka_and_a_worker(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    """The same scripted scenario as the embedded test (tests/outbound_scenario.py), through
    ``trackpipe edge`` + Kafka + ``trackpipe worker``: exactly the same deliveries."""
    env = _env(kafka_bootstrap, clickhouse_server, ch_database, unique_name)
    _prepare(env, tmp_path)
    receiver = Receiver(free_port())
    receiver.up()
    with pipeline(tmp_path, env, receiver) as base:
        expected = send_outbound_scenario(base, receiver, timeout=120)
        bodies = check_deliveries(
            receiver, expected, log_settled(base, receiver), timeout=120, fold_catch_ups=True
        )
        assert len(bodies) == len(expected.hooks) == 10 and len(expected.postbacks) == 5


def test_a_gone_endpoint_is_disabled_in_every_worker_until_reenabled_through_an_edge(
    tmp_path, kafka_bootstrap, clickhouse_server, ch_database, unique_name
):
    env = _env(kafka_bootstrap, clickhouse_server, ch_database, unique_name)
    _prepare(env, tmp_path)
    receiver = GoneReceiver(free_port())
    receiver.up()
    with pipeline(tmp_path, env, receiver) as base:
        goal = _goal(base, f"http://127.0.0.1:{receiver.port}/gone", "Gone")
        track = f"{base}/api/conversions/track/{goal['token']}"
        assert (
            http("POST", track, json.dumps({"value": 1, "currency": "USD", "order_id": "G1"}).encode())[0]
            == 200
        )
        (first,) = wait_for("dead by 410", lambda: _list(base, status="dead"), 120)
        assert first["dead_reason"] == "gone"
        # the circuit's state is on the endpoints topic: the edge lists it
        (ep,) = wait_for("the endpoint disabled", lambda: _endpoints(base))
        assert ep["key"] == f"goal:{goal['id']}" and ep["disabled_reason"] == "gone"

        # while disabled: the next delivery dies without an attempt
        assert (
            http("POST", track, json.dumps({"value": 1, "currency": "USD", "order_id": "G2"}).encode())[0]
            == 200
        )
        wait_for(
            "dead as endpoint_disabled",
            lambda: [d for d in _list(base, status="dead") if d["dead_reason"] == "endpoint_disabled"],
        )
        assert len(receiver.on("/gone")) == 1

        receiver.gone = False
        status, answer = http("POST", f"{base}/api/v1/endpoints/{ep['key']}/enable", None, AUTH)
        assert status == 200 and answer == {"key": ep["key"], "enabled": True}, answer
        assert _endpoints(base) == []
        retry = f"{base}/api/v1/deliveries/retry"

        def delivered() -> bool:  # the worker applies the re-enable and the retries as it reads them
            if len(_list(base, status="delivered")) == 2:
                return True
            http("POST", retry, b'{"goal": "%s"}' % goal["id"].encode(), AUTH)
            return False

        wait_for("both delivered", delivered, 120)
        assert {json.loads(b)["order_id"] for _, b in receiver.on("/gone")} == {"G1", "G2"}
