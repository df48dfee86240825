"""HTTP load generator, run in its own process: ``python -m bench.loadgen --port P --bodies FILE ...``.

Closed loop: ``--concurrency`` keep-alive connections, each sends the next request as soon as the previous
answer is complete. Requests are pre-built bytes (one POST per body line of ``--bodies``), written on raw
asyncio transports, so the generator spends its CPU on the server's answers, not on an HTTP client library.
Only answers completed inside the measured window (after ``--warmup`` seconds) count. It stops after
``--duration`` seconds or ``--max-requests`` answers, whichever comes first, and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time

import orjson

USER_AGENT = "trackpipe-bench"


def build_requests(host: str, port: int, path: str, bodies: list[bytes]) -> list[bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    return [head + str(len(b)).encode() + b"\r\n\r\n" + b for b in bodies]


class _Run:
    def __init__(self, requests: list[bytes], warmup: float, duration: float, max_requests: int):
        self.requests = requests
        self.next_i = 0
        self.start = time.perf_counter()
        self.window_start = self.start + warmup
        self.end = self.window_start + duration
        self.max_requests = max_requests
        self.latencies_ns: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.stopped = asyncio.get_running_loop().create_future()
        self.window_end: float | None = None

    def next_request(self) -> bytes | None:
        if self.stopped.done():
            return None
        req = self.requests[self.next_i % len(self.requests)]
        self.next_i += 1
        return req

    def record(self, status: int, latency_ns: int) -> None:
        now = time.perf_counter()
        if now >= self.window_start:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies_ns.append(latency_ns)
        if (now >= self.end or len(self.latencies_ns) >= self.max_requests) and not self.stopped.done():
            self.window_end = now
            self.stopped.set_result(None)


class _Conn(asyncio.Protocol):
    def __init__(self, run: _Run, lost: asyncio.Future[None]):
        self.run = run
        self.lost = lost
        self.buf = bytearray()
        self.need: int | None = None
        self.status = 0
        self.t0 = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        req = self.run.next_request()
        if req is None:
            self.transport.close()
            return
        self.t0 = time.perf_counter_ns()
        self.transport.write(req)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                eol = head.find(b"\r\n", at)
                length = int(head[at + 15 : eol if eol >= 0 else len(head)])
            self.need = end + 4 + length
        if len(self.buf) < self.need:
            return
        del self.buf[: self.need]
        self.need = None
        self.run.record(self.status, time.perf_counter_ns() - self.t0)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.run.stopped.done():
            self.run.errors += 1
        if not self.lost.done():
            self.lost.set_result(None)


async def _connection(host: str, port: int, run: _Run) -> None:
    loop = asyncio.get_running_loop()
    while not run.stopped.done():
        lost: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(lambda lost=lost: _Conn(run, lost), host, port)
        except OSError:
            run.errors += 1
            await asyncio.sleep(0.05)
            continue
        await lost  # the server closed the connection: open another one while the run lasts


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[i]


async def generate(
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    max_requests: int,
) -> dict[str, object]:
    run = _Run(build_requests(host, port, path, bodies), warmup, duration, max_requests)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    tasks = [asyncio.create_task(_connection(host, port, run)) for _ in range(concurrency)]
    try:
        await asyncio.wait_for(asyncio.shield(run.stopped), timeout=warmup + duration + 30)
    except TimeoutError:
        run.window_end = time.perf_counter()
        run.stopped.set_result(None)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    window = (run.window_end or time.perf_counter()) - run.window_start
    lat_ms = sorted(ns / 1e6 for ns in run.latencies_ns)
    ok = sum(n for status, n in run.statuses.items() if 200 <= status < 300)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "tool": "python",
        "requests": len(lat_ms),
        "ok_requests": ok,
        "window_s": window,
        "ok_requests_per_s": ok / window if window > 0 else 0.0,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "connection_errors": run.errors,
        "p50_ms": percentile(lat_ms, 50),
        "p90_ms": percentile(lat_ms, 90),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": lat_ms[-1] if lat_ms else 0.0,
        "generator_cpu_share": cpu / (time.perf_counter() - run.start),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/track")
    p.add_argument("--bodies", required=True, help="file with one request body per line")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--max-requests", type=int, default=1_000_000)
    args = p.parse_args(argv)
    with open(args.bodies, "rb") as fh:
        bodies = [line.rstrip(b"\n") for line in fh if line.strip()]
    result = asyncio.run(
        generate(
            args.host,
            args.port,
            args.path,
            bodies,
            concurrency=args.concurrency,
            warmup=args.warmup,
            duration=args.duration,
            max_requests=args.max_requests,
        )
    )
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
