"""The edge app's own CPU per request, without sockets: ``python -m bench.edge_inproc [--batch] [--fake]``.

Drives ``build_edge_app`` (uvloop) through aiohttp's protocol objects with in-memory transports: each of
``--conns`` connections sends its next pre-built request (the bench's bodies) as soon as the answer's
status line is written. No socket, no load generator, so the figure is the edge's Python and C work
alone and moves far less with other load on the machine than the wrk sweep does; ``--fake`` replaces
Kafka by a publisher that acknowledges at once (else ``--kafka host:port`` is needed). Prints CPU
microseconds per event and per request over ``--n`` events after a warm-up. For an exact, load-proof
count run it under ``valgrind --tool=cachegrind --cache-sim=no`` at two ``--n`` and divide the difference
of the instruction counts (decision 170 quotes both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import uvloop
from aiohttp import web

from bench import stream
from bench.loadgen import build_requests


class _Transport(asyncio.Transport):
    def __init__(self, driver: _Driver, index: int):
        super().__init__()
        self._driver, self._index, self._closing = driver, index, False

    def write(self, data: Any) -> None:
        if bytes(data[:9]) == b"HTTP/1.1 ":
            self._driver.answered(self._index, bytes(data[9:10]))

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40_000 + self._index), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 0


class _Driver:
    def __init__(self, loop: asyncio.AbstractEventLoop, requests: list[bytes]):
        self.loop, self.requests = loop, requests
        self.protocols: list[Any] = []
        self.count = self.failed = self.sent = 0
        self.target = 0
        self.reached: asyncio.Future[None] = loop.create_future()

    def answered(self, index: int, status: bytes) -> None:
        self.count += 1
        self.failed += status != b"2"
        if self.count >= self.target and not self.reached.done():
            self.reached.set_result(None)
        self.loop.call_soon(self.send, index)

    def send(self, index: int) -> None:
        self.sent += 1
        self.protocols[index].data_received(self.requests[self.sent % len(self.requests)])

    async def until(self, answers: int) -> None:
        self.target, self.reached = self.count + answers, self.loop.create_future()
        await self.reached


class _AckAtOnce:
    partitions = 4

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish_many(self, records: list[tuple[int, bytes]]) -> list[BaseException | None]:
        return [None] * len(records)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from ingest.app import build_edge_app
    from ingest.config.edge import EdgeConfig

    epr = 50 if args.batch else 1
    bodies = stream.bodies(200 if args.batch else 2000, epr, seed=62 if args.batch else 61)
    if args.fake:
        factory: Any = _AckAtOnce
    else:
        from bench.kafka_topics import create_topics
        from ingest.produce.kafka_publisher import KafkaPublisher

        topic = f"bench-inproc-{uuid.uuid4().hex[:8]}"
        create_topics(args.kafka, topic, 4)

        def factory() -> KafkaPublisher:
            return KafkaPublisher(args.kafka, topic, partitions=4)

    runner = web.AppRunner(build_edge_app(EdgeConfig(), factory), access_log=None)
    await runner.setup()
    driver = _Driver(asyncio.get_running_loop(), build_requests("127.0.0.1", 8080, "/track", bodies))
    for i in range(args.conns):
        protocol = runner.server()
        protocol.connection_made(_Transport(driver, i))
        driver.protocols.append(protocol)
    try:
        for i in range(args.conns):
            driver.send(i)
        await driver.until(2 * 3000 // epr)  # warm-up: memos, caches, the producer
        cpu0, wall0, n0 = time.process_time(), time.perf_counter(), driver.count
        await driver.until(args.n // epr)
        cpu, wall, requests = time.process_time() - cpu0, time.perf_counter() - wall0, driver.count - n0
    finally:
        for protocol in driver.protocols:
            protocol.transport.close()
        await runner.cleanup()
    return {
        "events_per_request": epr,
        "connections": args.conns,
        "requests": requests,
        "not_2xx": driver.failed,
        "cpu_us_per_event": cpu / requests / epr * 1e6,
        "cpu_us_per_request": cpu / requests * 1e6,
        "events_per_s": requests * epr / wall,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge_inproc")
    p.add_argument("--batch", action="store_true", help="50-event POSTs (default: 1-event)")
    p.add_argument("--fake", action="store_true", help="a publisher that acknowledges at once, no Kafka")
    p.add_argument("--kafka", help="broker host:port (without --fake)")
    p.add_argument("--conns", type=int, default=256)
    p.add_argument("--n", type=int, default=60_000, help="events measured after the warm-up")
    args = p.parse_args(argv)
    if not args.fake and not args.kafka:
        p.error("--kafka host:port, or --fake")
    print(json.dumps(uvloop.run(_run(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
