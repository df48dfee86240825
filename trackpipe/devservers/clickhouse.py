"""A real ClickHouse server (HTTP + native TCP) on loopback, backed by chdb-core's embedded engine.

For tests and local development; no Docker or ClickHouse install needed, only the ``chdb-core``
wheel. The engine runs in a dedicated child process (:mod:`trackpipe.devservers.clickhouse_proc`,
see its docstring for the mechanics) and serves clickhouse-connect (HTTP) and clickhouse-client
(native TCP) like a normal server.

The default user has no password, so the server binds 127.0.0.1 only.

Usage::

    with ClickHouseServer() as ch:
        client = clickhouse_connect.get_client(host=ch.host, port=ch.http_port)

Developers::

    python -m trackpipe.devservers.clickhouse [--http-port N --tcp-port N --data DIR]

This module uses the standard library only and imports nothing from other project packages.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO

from trackpipe.devservers import clickhouse_proc
from trackpipe.devservers.ports import LOOPBACK, pick_free_ports

_LOG_NAME = "server.log"
_PORT_RETRIES = 3


class ClickHouseServerError(RuntimeError):
    """The dev ClickHouse server could not be started (message includes the server's log tail)."""


def http_request(
    host: str, port: int, sql: str | None = None, *, path: str = "/", timeout: float = 5.0
) -> str:
    """GET ``path`` (``sql`` is None) or POST ``sql`` to a ClickHouse HTTP interface; returns the body.

    Raises ``urllib.error.HTTPError`` on ClickHouse errors, ``OSError`` on connection problems.
    """
    data = sql.encode() if sql is not None else None
    request = urllib.request.Request(
        f"http://{host}:{port}{path}", data=data, method="POST" if data else "GET"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - fixed http URL
        return str(response.read().decode())


class ClickHouseServer:
    """A chdb-core ClickHouse server in a child process. Context manager; ``start()``/``stop()``.

    :param http_port: / :param tcp_port: fixed ports; ``None`` picks a free loopback port. If both are
        picked, a start that loses a port to another process in the meantime is retried with new ones.
    :param data_dir: persistent engine data directory; default: ``data/`` inside the temporary work dir.
    :param keep: keep the temporary work dir (config, log, default data) after ``stop()``.
    :param own_session: run the server in its own session, so a Ctrl-C in the terminal reaches only the
        caller, which stops the server when it chooses (``trackpipe cluster up``: after the workers).
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        http_port: int | None = None,
        tcp_port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        keep: bool = False,
        own_session: bool = False,
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        python: str = sys.executable,
    ) -> None:
        self._requested_http_port = http_port
        self._requested_tcp_port = tcp_port
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self.keep = keep
        self.own_session = own_session
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._python = python
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._workdir: Path | None = None
        self._http_port: int | None = None
        self._tcp_port: int | None = None
        self._token = ""
        self.startup_seconds: float | None = None

    # -- properties ---------------------------------------------------------------------------

    @property
    def http_port(self) -> int:
        if self._http_port is None:
            raise ClickHouseServerError("server not started")
        return self._http_port

    @property
    def tcp_port(self) -> int:
        if self._tcp_port is None:
            raise ClickHouseServerError("server not started")
        return self._tcp_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def workdir(self) -> Path | None:
        return self._workdir

    @property
    def data_dir(self) -> Path | None:
        if self._data_dir is not None:
            return self._data_dir
        return self._workdir / "data" if self._workdir is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._workdir / _LOG_NAME if self._workdir is not None else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> ClickHouseServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ClickHouseServer:
        if self._proc is not None:
            raise ClickHouseServerError("server already started")
        auto_ports = self._requested_http_port is None and self._requested_tcp_port is None
        attempts = _PORT_RETRIES if auto_ports else 1
        began = time.monotonic()
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
            except _PortInUse as exc:
                self._teardown(remove_workdir=not self.keep)
                if attempt == attempts:
                    raise ClickHouseServerError(str(exc)) from None
                continue
            except BaseException:
                self._teardown(remove_workdir=not self.keep)
                raise
            self.startup_seconds = time.monotonic() - began
            atexit.register(self.stop)
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """SIGTERM the server (it kills its holding query and exits), SIGKILL after ``stop_timeout``."""
        atexit.unregister(self.stop)
        self._teardown(remove_workdir=not self.keep)

    # -- queries (stdlib HTTP, for readiness checks and small admin tasks) ----------------------

    def http_query(self, sql: str, timeout: float = 30.0) -> str:
        return http_request(self.host, self.http_port, sql, timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "<no log>"
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "<empty log>"

    # -- internals ----------------------------------------------------------------------------

    def _start_once(self) -> None:
        if self._requested_http_port is not None and self._requested_tcp_port is not None:
            http_port, tcp_port = self._requested_http_port, self._requested_tcp_port
        else:
            requested = (self._requested_http_port, self._requested_tcp_port)
            free = [port for port in pick_free_ports(3) if port not in requested]
            http_port = self._requested_http_port or free.pop(0)
            tcp_port = self._requested_tcp_port or free.pop(0)
        self._http_port, self._tcp_port = http_port, tcp_port
        self._token = uuid.uuid4().hex
        self._workdir = Path(tempfile.mkdtemp(prefix="trackpipe-clickhouse-"))
        data_dir = self.data_dir
        assert data_dir is not None
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self._workdir / _LOG_NAME, "ab")  # closed in _teardown

        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        cmd = [
            self._python,
            "-m",
            "trackpipe.devservers.clickhouse_proc",
            "--http-port",
            str(http_port),
            "--tcp-port",
            str(tcp_port),
            "--data",
            str(data_dir),
            "--token",
            self._token,
            "--parent-pid",
            str(os.getpid()),
            "--shutdown-grace",
            str(max(0.5, min(1.0, self.stop_timeout / 3))),
        ]
        if not self.keep and self._data_dir is None:
            cmd.append("--remove-workdir-if-orphaned")
        self._proc = subprocess.Popen(
            cmd,
            cwd=self._workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_session,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        check = (
            "SELECT version(), "
            f"(SELECT count() FROM system.processes WHERE {clickhouse_proc.hold_query_filter(self._token)})"
        )
        last_problem = "no answer yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_tail()
                port_in_use = "Address already in use" in tail
                message = (
                    f"ClickHouse dev server exited with code {code} during startup"
                    f"{': a port is already in use' if port_in_use else ''} "
                    f"(http={self.host}:{self._http_port}, tcp={self.host}:{self._tcp_port}).\n"
                    f"--- server log tail ---\n{tail}"
                )
                if port_in_use:
                    raise _PortInUse(message)
                raise ClickHouseServerError(message)
            if time.monotonic() > deadline:
                raise ClickHouseServerError(
                    f"ClickHouse dev server not ready after {self.startup_timeout:.0f}s ({last_problem}).\n"
                    f"--- server log tail ---\n{self.log_tail()}"
                )
            try:
                if http_request(self.host, self.http_port, path="/ping", timeout=1).strip() == "Ok.":
                    version, ours = self.http_query(check, timeout=5).strip().split("\t")
                    if ours == "1":  # the server answering is ours, not something else on that port
                        if not version.startswith(tuple("0123456789")):
                            raise ClickHouseServerError(f"unexpected version() answer: {version!r}")
                        return
                    last_problem = "a server answers on the port but it is not this one (yet)"
                else:
                    last_problem = "/ping did not answer 'Ok.'"
            except (OSError, ValueError) as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)

    def _teardown(self, *, remove_workdir: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if remove_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


class _PortInUse(ClickHouseServerError):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trackpipe.devservers.clickhouse",
        description="Run a ClickHouse server (chdb-core engine) on 127.0.0.1 in the foreground.",
    )
    parser.add_argument("--http-port", type=int, default=None, help="default: a free port")
    parser.add_argument("--tcp-port", type=int, default=None, help="default: a free port")
    parser.add_argument("--data", default=None, help="persistent data directory (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir (config, log)")
    args = parser.parse_args(argv)

    stop = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = ClickHouseServer(
        http_port=args.http_port, tcp_port=args.tcp_port, data_dir=args.data, keep=args.keep
    )
    try:
        server.start()
    except ClickHouseServerError as exc:
        print(exc, file=sys.stderr)
        return 1
    version = server.http_query("SELECT version()").strip()
    print(
        f"ClickHouse {version} ready in {server.startup_seconds:.2f}s (pid {server.pid})\n"
        f"  HTTP:  {server.url}\n"
        f"  TCP:   {server.host}:{server.tcp_port}  (clickhouse-client --port {server.tcp_port})\n"
        f"  data:  {server.data_dir}\n"
        f"  log:   {server.log_path}\n"
        f"  tests: export TRACKPIPE_TEST_CLICKHOUSE={server.url}\n"
        "Ctrl-C to stop.",
        flush=True,
    )
    try:
        while not stop:
            if not server.is_running():
                print(f"server exited unexpectedly\n{server.log_tail()}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
