"""HTTP load generator, run in its own process: ``python -m bench.loadgen --port P --bodies FILE ...``.

Closed loop (default): ``--concurrency`` keep-alive connections, each sends the next request as soon as the
previous answer is complete. Requests are pre-built bytes (one POST per body line of ``--bodies``), written
on raw asyncio transports, so the generator spends its CPU on the server's answers, not on an HTTP client
library. Only answers completed inside the measured window (after ``--warmup`` seconds) count. It stops
after ``--duration`` seconds or ``--max-requests`` answers, whichever comes first, and prints one JSON
object.

Open loop (``--rate R``): requests are due at a fixed rate, R per second, whatever the server does; each
goes out on an idle connection of a pool of at most ``--concurrency`` (opened up front), or waits for one.
Latency is measured from the request's *scheduled* time, not from when it could be written (as wrk2 does:
a server that stalls is charged for every request it held up, no coordinated omission). Requests scheduled
inside the measured window count; the run then waits up to ``--drain`` seconds for their answers (those
still missing are reported as ``unanswered``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
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


class _Responses:
    """HTTP/1.1 responses read off a connection, one at a time (status line and Content-Length only)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.need: int | None = None
        self.status = 0

    def feed(self, data: bytes) -> int | None:
        """Add ``data``; the status of the response it completes (then dropped from the buffer), or None."""
        self.buf += data
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                eol = head.find(b"\r\n", at)
                length = int(head[at + 15 : eol if eol >= 0 else len(head)])
            self.need = end + 4 + length
        if len(self.buf) < self.need:
            return None
        del self.buf[: self.need]
        self.need = None
        return self.status


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
        self.reader = _Responses()
        self.t0 = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
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
        if self.reader.feed(data) is None:
            return
        self.run.record(self.reader.status, time.perf_counter_ns() - self.t0)
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


class _OpenRun:
    """The schedule and the results of an open-loop run."""

    def __init__(self, requests: list[bytes], rate: float, warmup: float, duration: float):
        self.requests = requests
        self.rate = rate
        self.start = time.perf_counter() + 0.05
        self.window_start = self.start + warmup
        self.end = self.window_start + duration
        self.sent = 0  # requests scheduled so far (the k-th is due at start + k / rate)
        self.idle: collections.deque[_OpenConn] = collections.deque()
        self.backlog: collections.deque[tuple[bytes, float]] = collections.deque()
        self.latencies_ns: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.in_window = 0  # requests scheduled inside the window
        self.answered_in_window = 0
        self.done = asyncio.get_running_loop().create_future()
        self.pacing = True

    def dispatch(self, req: bytes, due: float) -> None:
        while self.idle:
            conn = self.idle.popleft()
            if conn.usable:
                conn.send(req, due)
                return
        self.backlog.append((req, due))

    def answered(self, conn: _OpenConn, status: int, due: float) -> None:
        if due >= self.window_start and due < self.end:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies_ns.append(int((time.perf_counter() - due) * 1e9))
            self.answered_in_window += 1
            if not self.pacing and self.answered_in_window >= self.in_window and not self.done.done():
                self.done.set_result(None)
        if self.backlog:
            conn.send(*self.backlog.popleft())
        else:
            self.idle.append(conn)


class _OpenConn(asyncio.Protocol):
    def __init__(self, run: _OpenRun):
        self.run = run
        self.reader = _Responses()
        self.due = 0.0
        self.transport: asyncio.Transport | None = None
        self.usable = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        self.usable = True
        self.run.idle.append(self)

    def send(self, req: bytes, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(req)

    def data_received(self, data: bytes) -> None:
        if self.reader.feed(data) is None:
            return
        self.run.answered(self, self.reader.status, self.due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        if not self.run.done.done():
            self.run.errors += 1


async def generate_open(
    host: str,
    port: int,
    path: str,
    bodies: list[bytes],
    *,
    rate: float,
    connections: int,
    warmup: float,
    duration: float,
    drain: float,
) -> dict[str, object]:
    """An open-loop run at ``rate`` requests per second (see the module's doc)."""
    loop = asyncio.get_running_loop()
    requests = build_requests(host, port, path, bodies)
    run = _OpenRun(requests, rate, warmup, duration)
    conns = await asyncio.gather(
        *(loop.create_connection(lambda: _OpenConn(run), host, port) for _ in range(connections)),
        return_exceptions=True,
    )
    opened = [c for c in conns if not isinstance(c, BaseException)]
    run.errors += len(conns) - len(opened)
    run.start = time.perf_counter() + 0.05  # the schedule starts once the pool is open
    run.window_start = run.start + warmup
    run.end = run.window_start + duration
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    n = len(requests)
    while True:
        now = time.perf_counter()
        due_count = int((now - run.start) * rate) + 1 if now >= run.start else 0
        while run.sent < due_count:
            due = run.start + run.sent / rate
            if due >= run.end:
                break
            if due >= run.window_start:
                run.in_window += 1
            run.dispatch(requests[run.sent % n], due)
            run.sent += 1
        if run.start + run.sent / rate >= run.end:
            break
        # at least a millisecond: shorter sleeps round down to none on uvloop and the pacer would spin (CPU
        # taken from the server it measures); requests due meanwhile go out together on the next turn,
        # their latency still counted from their own scheduled times
        await asyncio.sleep(max(0.001, run.start + run.sent / rate - time.perf_counter()))
    run.pacing = False
    if run.answered_in_window >= run.in_window and not run.done.done():
        run.done.set_result(None)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(run.done), timeout=drain)
    if not run.done.done():
        run.done.set_result(None)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for transport, _ in opened:  # type: ignore[misc]
        transport.close()
    lat_ms = sorted(ns / 1e6 for ns in run.latencies_ns)
    ok = sum(k for status, k in run.statuses.items() if 200 <= status < 300)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "tool": "python-open-loop",
        "rate_per_s": rate,
        "connections": len(opened),
        "scheduled": run.in_window,
        "requests": len(lat_ms),
        "ok_requests": ok,
        "unanswered": run.in_window - run.answered_in_window,
        "window_s": duration,
        "ok_requests_per_s": ok / duration if duration > 0 else 0.0,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "connection_errors": run.errors,
        "p50_ms": percentile(lat_ms, 50),
        "p90_ms": percentile(lat_ms, 90),
        "p99_ms": percentile(lat_ms, 99),
        "max_ms": lat_ms[-1] if lat_ms else 0.0,
        "generator_cpu_share": cpu / (time.perf_counter() - run.start),
    }


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (the generator's own CPU is less), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


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
    p.add_argument("--rate", type=float, default=0.0, help="open loop: requests per second (0: closed loop)")
    p.add_argument("--drain", type=float, default=10.0, help="open loop: seconds to wait for answers")
    args = p.parse_args(argv)
    with open(args.bodies, "rb") as fh:
        bodies = [line.rstrip(b"\n") for line in fh if line.strip()]
    loop = _new_loop()
    if args.rate > 0:
        work = generate_open(
            args.host,
            args.port,
            args.path,
            bodies,
            rate=args.rate,
            connections=args.concurrency,
            warmup=args.warmup,
            duration=args.duration,
            drain=args.drain,
        )
    else:
        work = generate(
            args.host,
            args.port,
            args.path,
            bodies,
            concurrency=args.concurrency,
            warmup=args.warmup,
            duration=args.duration,
            max_requests=args.max_requests,
        )
    try:
        result = loop.run_until_complete(work)
    finally:
        loop.close()
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
