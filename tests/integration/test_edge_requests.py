"""How requests arrive, over raw connections to the edge served as ``trackpipe run`` serves it: a body must
arrive in time (408, connection closed), ``Expect: 100-continue`` over the limit is refused before the
body is sent (413), a malformed body is a 400 and a client gone mid-request is counted under its own
reason; none of them is logged as an error."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ingest.config.edge import EdgeConfig
from ingest.http.common import CONFIG, METRICS, EdgeMetrics
from ingest.http.middleware import error_middleware
from tests.edge_helpers import local_edge, logged_events, raw_request, read_answer, served
from tests.integration.test_inputs_edge import inputs_app

BODY = orjson.dumps({"cid": "1", "pid": "1", "vid": "v-1", "ev": [{"evt": "hitGoal", "goals": [7]}]})


def head(path: str, *lines: str, method: str = "POST") -> bytes:
    fields = ["Host: edge", "User-Agent: pytest", "Content-Type: application/json", *lines]
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{f}\r\n" for f in fields) + "\r\n").encode()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    return await reader.read(1) == b""


async def metrics_text(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
        return await resp.text()


async def until_counted(port: int, code: str) -> str:
    """The edge's metrics once a request is counted under ``code`` (the edge notices a gone client on
    its own time)."""
    deadline = time.monotonic() + 10
    while True:
        text = await metrics_text(port)
        if f'code="{code}"' in text or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.05)


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    bad = [r for r in caplog.records if r.levelno >= logging.WARNING]
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in bad]


# ---------------------------------------------------------------- the body must arrive


@pytest.mark.parametrize("sent", [b"", b'{"cid": "1", '], ids=["nothing", "part"])
async def test_body_that_does_not_arrive_is_a_408_and_the_connection_closes(tmp_path, sent, caplog):
    app, log = local_edge(tmp_path, body_read_timeout_s=0.3)
    async with served(app) as port:
        reader, writer = await raw_request(port, head("/track", "Content-Length: 200") + sent)
        # well under aiohttp's own 10 s of waiting for the rest of a body after an answer
        async with asyncio.timeout(5):
            answer = await read_answer(reader)
            assert answer.status == 408
            assert orjson.loads(answer.body)["error"] == {
                "code": "body_timeout",
                "message": "the request body did not arrive within 0.3 s",
            }
            assert answer.headers["connection"] == "close"
            assert await closed_by_server(reader)
        writer.close()
        assert 'trackpipe_edge_requests_rejected_total{code="body_timeout"} 1.0' in await metrics_text(port)
    assert logged_events(log) == [] and problems(caplog) == []


async def test_body_timeout_on_pushwoosh_is_in_its_shape(tmp_path):
    app, _ = local_edge(tmp_path, body_read_timeout_s=0.3)
    async with served(app) as port:
        reader, writer = await raw_request(port, head("/json/1.3/pushStat", "Content-Length: 50"))
        async with asyncio.timeout(5):
            answer = await read_answer(reader)
            assert answer.status == 408 and orjson.loads(answer.body)["status_code"] == 408
            assert await closed_by_server(reader)
        writer.close()


async def test_a_body_on_time_is_read_as_before(tmp_path):
    app, log = local_edge(tmp_path, body_read_timeout_s=0.3)
    async with served(app) as port:
        reader, writer = await raw_request(port, head("/track", f"Content-Length: {len(BODY)}") + BODY[:10])
        writer.write(BODY[10:])
        async with asyncio.timeout(5):
            assert (await read_answer(reader)).status == 200
        writer.close()
    assert len(logged_events(log)) == 1


# ---------------------------------------------------------------- Expect: 100-continue


async def test_expect_continue_over_the_limit_is_refused_before_the_body_on_every_body_route(tmp_path):
    app, _ = inputs_app(tmp_path, max_body_bytes=4096)
    # (aiohttp reads and drops what a refused client may still send for lingering_time, 10 s by default;
    # the server's stop waits for that)
    async with served(app, lingering_time=0.5) as port:
        routes = {
            (r.resource.canonical, r.method)
            for r in app.router.routes()
            if r.resource is not None and r.method in ("POST", "PUT", "PATCH")
        }
        assert len(routes) >= 11, routes
        for path, method in sorted(routes):
            path = path.replace("{token}", "t").replace("{goal_id}", "g")
            request = head(path, "Expect: 100-continue", "Content-Length: 5000000", method=method)
            reader, writer = await raw_request(port, request)
            async with asyncio.timeout(5):
                answer = await read_answer(reader)  # the first answer: not "100 Continue"
            writer.close()
            assert answer.status == 413, (method, path, answer.status)
            assert orjson.loads(answer.body)["error"]["code"] == "payload_too_large"
            assert answer.headers["connection"] == "close"


async def test_expect_continue_within_the_limit_continues(tmp_path):
    app, log = local_edge(tmp_path)
    async with served(app, lingering_time=0.5) as port:
        request = head("/track", "Expect: 100-continue", f"Content-Length: {len(BODY)}")
        reader, writer = await raw_request(port, request)
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(BODY)
            answer = await read_answer(reader)
        writer.close()
        assert answer.status == 200
        reader, writer = await raw_request(port, head("/track", "Expect: coffee", "Content-Length: 2"))
        async with asyncio.timeout(5):
            answer = await read_answer(reader)
        writer.close()
        assert answer.status == 417 and orjson.loads(answer.body)["error"]["code"] == "expectation_failed"
    assert len(logged_events(log)) == 1


# ---------------------------------------------------------------- gone clients, malformed requests


async def test_client_gone_mid_body_is_counted_and_not_an_error(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    app, log = local_edge(tmp_path)
    async with served(app) as port:
        _, writer = await raw_request(port, head("/track", "Content-Length: 1000") + b'{"cid": "1"')
        writer.close()
        await writer.wait_closed()
        text = await until_counted(port, "client_disconnected")
    assert 'trackpipe_edge_requests_rejected_total{code="client_disconnected"} 1.0' in text
    assert 'code="internal"' not in text
    assert problems(caplog) == []
    gone = [r for r in caplog.records if "client went away" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.INFO and gone[0].exc_info is None
    assert logged_events(log) == []


async def test_malformed_body_is_a_400_and_not_an_error(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    app, log = local_edge(tmp_path)
    async with served(app) as port:
        request = head("/track", "Content-Encoding: gzip", "Content-Length: 10") + b"0123456789"
        reader, writer = await raw_request(port, request)
        async with asyncio.timeout(5):
            answer = await read_answer(reader)
            assert answer.status == 400
            err = orjson.loads(answer.body)["error"]
            assert err["code"] == "malformed_body" and "content-encoding: gzip" in err["message"]
            assert await closed_by_server(reader)
        writer.close()
        assert 'code="malformed_body"} 1.0' in await metrics_text(port)
    assert logged_events(log) == [] and problems(caplog) == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        head("/track", "Transfer-Encoding: chunked") + b"zz\r\nabc\r\n0\r\n\r\n",
        b"POST /track HTTP/1.1\r\nHost: edge\r\nNot a header\r\n\r\n",
        b"GET /track HTTP/1.1\r\nHost: edge\r\nX-Long: " + b"x" * 70_000 + b"\r\n\r\n",
    ],
    ids=["chunk-size", "header-line", "header-too-long"],
)
async def test_unparsable_requests_are_400_and_not_logged_as_errors(tmp_path, caplog, request_bytes):
    caplog.set_level(logging.INFO)
    app, _ = local_edge(tmp_path)
    async with served(app) as port:
        reader, writer = await raw_request(port, request_bytes)
        async with asyncio.timeout(5):
            status_line = await reader.readline()
        writer.close()
    assert status_line.split()[1] in (b"400", b"431"), status_line
    assert problems(caplog) == []


async def test_a_dependency_connection_error_is_still_an_internal_error(caplog):
    """Only the client's own connection counts as "client_disconnected"; a backing service refusing a
    connection while the client waits is our fault and says so."""

    async def handler(request: web.Request) -> web.Response:
        raise ConnectionRefusedError("clickhouse:8123 refused the connection")

    app = web.Application(middlewares=[error_middleware])
    app[METRICS], app[CONFIG] = EdgeMetrics(), EdgeConfig()
    app.router.add_get("/x", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/x")
        assert resp.status == 500 and (await resp.json())["error"]["code"] == "internal"
    assert [r.levelno for r in caplog.records if r.name == "ingest.http.middleware"] == [logging.ERROR]
