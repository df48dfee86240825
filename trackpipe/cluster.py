"""``trackpipe cluster up``: the distributed pipeline on one machine (issue 15, docs/cluster.md).

One command starts a Kafka broker (KRaft, from the Maven jars) and a ClickHouse server (chdb-core) with
their data under ``--data-dir`` (default ``./var/cluster``), creates the topics, migrates ClickHouse, and
runs N ``trackpipe edge`` processes sharing one port (``SO_REUSEPORT``: the kernel spreads connections
over them) and M ``trackpipe worker`` processes (one consumer group) under honcho, from a Procfile it
writes into the data dir. Each process logs to ``<data-dir>/logs/<name>.log`` besides honcho's prefixed
console output. SIGINT / SIGTERM stop the edges and workers first, then the servers; the data stays, so
the next ``up`` carries on with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Annotated, Any

import typer

cluster_app = typer.Typer(
    help="The distributed pipeline on one machine (Kafka, ClickHouse, edges, workers).",
    no_args_is_help=True,
)

#: honcho's name for its own messages; they go to ``logs/cluster.log``
SYSTEM_NAME = "system"
EXIT_PROCESS_FAILED = 1
EXIT_BAD_SETUP = 2


@dataclass(frozen=True)
class ClusterPorts:
    """Every port the cluster listens on (all on ``host``, loopback by default)."""

    edge: int
    kafka: int
    kafka_controller: int
    clickhouse_http: int
    clickhouse_tcp: int
    worker_metrics: int  # worker i (1-based) serves /metrics on worker_metrics + i - 1; 0: none

    def named(self, workers: int) -> list[tuple[str, int]]:
        ports = [
            ("edge", self.edge),
            ("kafka", self.kafka),
            ("kafka controller", self.kafka_controller),
            ("clickhouse http", self.clickhouse_http),
            ("clickhouse tcp", self.clickhouse_tcp),
        ]
        if self.worker_metrics:
            ports += [(f"worker.{i} metrics", self.worker_metrics + i - 1) for i in range(1, workers + 1)]
        return ports


def duplicate_ports(named: list[tuple[str, int]]) -> list[str]:
    """The ports given to more than one listener, described."""
    seen: dict[int, str] = {}
    clashes = []
    for name, port in named:
        if port in seen:
            clashes.append(f"{port} ({seen[port]} and {name})")
        seen.setdefault(port, name)
    return clashes


def busy_ports(host: str, named: list[tuple[str, int]]) -> list[str]:
    """The listeners whose port cannot be bound on ``host`` right now (something else listens there)."""
    busy = []
    for name, port in named:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is fine
            try:
                sock.bind((host, port))
            except OSError as exc:
                busy.append(f"{name} port {port}: {exc.strerror}")
    return busy


@dataclass(frozen=True)
class ProcessSpec:
    """One honcho process: ``name`` (``edge.1``), its shell command, its own environment and directory."""

    name: str
    cmd: str
    env: dict[str, str]
    cwd: Path


def trackpipe_command() -> str:
    """How the children run this trackpipe: the same interpreter, so the same installation."""
    return f"exec {shlex.quote(sys.executable)} -m trackpipe.cli"


def procfile_text(host: str, port: int) -> str:
    """The Procfile of the cluster: one line per process type; honcho numbers the instances."""
    return (
        "# written by `trackpipe cluster up`, which runs it with honcho (edge.1..N, worker.1..M):\n"
        "# the shared settings are in cluster.env; each worker gets its own TRACKPIPE_WORKER_METRICS_PORT,\n"
        "# TRACKPIPE_DATA_DIR and working directory (workers/worker.I).\n"
        f"edge: {trackpipe_command()} edge --host {shlex.quote(host)} --port {port} --reuse-port\n"
        f"worker: {trackpipe_command()} worker\n"
    )


def plan_processes(
    procfile: str, edges: int, workers: int, shared_env: Mapping[str, str], data_dir: Path, metrics_base: int
) -> list[ProcessSpec]:
    """The processes honcho runs: ``edges`` of the Procfile's ``edge`` line (one port, shared) and
    ``workers`` of its ``worker`` line, each worker with what must be its own on one host: the metrics
    port (``metrics_base`` + i - 1; 0: none), the data dir (RocksDB tables) and the working directory
    (Faust's ``<app id>-data``)."""
    from honcho.environ import expand_processes, parse_procfile

    processes = parse_procfile(procfile).processes
    if set(processes) != {"edge", "worker"}:
        raise ValueError(f"the Procfile must define edge and worker, not {sorted(processes)}")
    specs = []
    for params in expand_processes(processes, concurrency={"edge": edges, "worker": workers}, env=None):
        env = {**shared_env, **params.env}
        cwd = data_dir
        kind, _, number = params.name.partition(".")
        if kind == "worker":
            cwd = data_dir / "workers" / params.name
            env["TRACKPIPE_DATA_DIR"] = str(cwd)
            env["TRACKPIPE_WORKER_METRICS_PORT"] = str(metrics_base + int(number) - 1 if metrics_base else 0)
        specs.append(ProcessSpec(params.name, params.cmd, env, cwd))
    return specs


def shared_environment(host: str, ports: ClusterPorts, partitions: int) -> dict[str, str]:
    """The settings every process of the cluster shares (``cluster.env``): where the servers are. Set
    explicitly so that a ``TRACKPIPE_KAFKA_*`` / ``TRACKPIPE_CLICKHOUSE_*`` of the caller's environment
    (another cluster's) cannot point the processes elsewhere; other ``TRACKPIPE_*`` pass through."""
    return {
        "TRACKPIPE_HOST": host,
        "TRACKPIPE_PORT": str(ports.edge),
        "TRACKPIPE_PARTITIONS": str(partitions),
        "TRACKPIPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports.kafka}",
        "TRACKPIPE_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "TRACKPIPE_CLICKHOUSE_HOST": "127.0.0.1",
        "TRACKPIPE_CLICKHOUSE_PORT": str(ports.clickhouse_http),
        "TRACKPIPE_CLICKHOUSE_USER": "default",
        "TRACKPIPE_CLICKHOUSE_PASSWORD": "",
        "TRACKPIPE_CLICKHOUSE_SECURE": "false",
    }


def env_file_text(env: Mapping[str, str]) -> str:
    lines = ["# the cluster's shared settings: `set -a; . ./cluster.env; set +a` to use them in a shell"]
    lines += [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def check_partitions(data_dir: Path, partitions: int) -> str | None:
    """The topics keep the partition count of the first ``up`` on ``data_dir`` (the edges compute the
    partition of each record from it): a different count later is refused. None: fine (recorded)."""
    state = data_dir / "cluster.json"
    if state.exists():
        recorded = json.loads(state.read_text(encoding="utf-8")).get("partitions")
        if recorded is not None and recorded != partitions:
            return (
                f"the topics in {data_dir} have {recorded} partitions, not {partitions}: "
                f"use --partitions {recorded}, or remove {data_dir} to start afresh"
            )
    state.write_text(json.dumps({"partitions": partitions}) + "\n", encoding="utf-8")
    return None


# --------------------------------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------------------------------


def persistent_kafka(directory: Path, port: int, controller_port: int) -> Any:
    """A :class:`~trackpipe.devservers.kafka.KafkaBroker` whose storage is ``directory`` and stays there:
    formatted on the first start only, kept by ``stop``. Its log is ``directory/broker.log``."""
    from trackpipe.devservers.kafka import KafkaBroker

    return KafkaBroker(port=port, controller_port=controller_port, storage_dir=directory)


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One ``up`` per data dir at a time (two brokers on one storage would corrupt it)."""
    import fcntl

    with open(data_dir / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _SetupError(f"another `trackpipe cluster up` is running on {data_dir}") from None
        yield


class _SetupError(Exception):
    """The cluster cannot start: the message says why; exit 2."""


class _Interrupted(Exception):
    """SIGINT / SIGTERM while the servers were starting."""


# --------------------------------------------------------------------------------------------------
# honcho
# --------------------------------------------------------------------------------------------------


def _tee_printer(output: IO[str], log_dir: Path) -> Any:
    from honcho.printer import Printer

    class TeePrinter(Printer):
        """honcho's prefixed console output, and each process's lines in ``log_dir/<name>.log``."""

        def __init__(self) -> None:
            super().__init__(output)
            self._files: dict[str, IO[str]] = {}
            self._lock = threading.RLock()  # also written from signal handlers

        def write(self, message: Any) -> None:
            with self._lock:
                super().write(message)
                data = message.data
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
                name = "cluster" if message.name in (None, SYSTEM_NAME) else str(message.name)
                fh = self._files.get(name)
                if fh is None:
                    fh = self._files[name] = open(log_dir / f"{name}.log", "a", encoding="utf-8")
                stamp = message.time.strftime("%Y-%m-%d %H:%M:%S")
                fh.writelines(f"{stamp} {line}\n" for line in text.splitlines())
                fh.flush()

        def system(self, text: str) -> None:
            from honcho.printer import Message

            self.write(Message("line", text + "\n", datetime.now(), SYSTEM_NAME, None))

        def close(self) -> None:
            with self._lock:
                for fh in self._files.values():
                    fh.close()
                self._files.clear()

    return TeePrinter()


def _parent_death_signal(sig: int) -> Callable[[], None]:
    """Linux: a function that makes the kernel send ``sig`` to the calling process when its parent dies
    (``PR_SET_PDEATHSIG``; kept across exec). libc is looked up here, before any fork."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None

    def arm() -> None:
        if prctl is not None:
            prctl(1, sig)  # PR_SET_PDEATHSIG

    return arm


def _manager(printer: Any, stop_timeout: float) -> Any:
    import functools

    import honcho.manager
    from honcho.manager import Manager
    from honcho.process import Popen, Process

    honcho.manager.KILL_WAIT = stop_timeout  # honcho's grace before SIGKILL (module constant, 5 s)
    up_pid = os.getpid()
    kill_with_parent = _parent_death_signal(signal.SIGKILL)

    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def child_setup() -> None:  # in the edge or worker, between fork and exec
        kill_with_parent()
        for sig in stop_signals:  # not the runner's SIG_IGN (it would survive the exec)
            signal.signal(sig, signal.SIG_DFL)

    class ClusterProcess(Process):
        """honcho's runner of one process (forked from ``up``), tied to ``up``'s life: should ``up`` die
        without stopping them (SIGKILL), the runner is killed, and so is its edge or worker (a SIGTERM
        could leave a worker stopping for ever against the broker that died with ``up`` too; the
        pipeline's at-least-once delivery into idempotent tables makes a kill lose and double nothing)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._child_ctor = functools.partial(Popen, preexec_fn=child_setup)

        def run(self, events: Any = None, ignore_signals: bool = False) -> None:
            kill_with_parent()
            if os.getppid() != up_pid:  # up died before the line above
                os._exit(1)
            for sig in stop_signals:  # only up stops the processes (honcho ignores them too, a bit later)
                signal.signal(sig, signal.SIG_IGN)
            super().run(events, ignore_signals)

    class ClusterManager(Manager):
        """honcho's Manager (pinned 2.0.0), told apart: why it stopped, and a stop that also reaches the
        processes which had not reported their start yet (honcho's own reads their missing pid)."""

        stop_reason: str | None = None

        def __init__(self) -> None:
            super().__init__(printer)
            self._process_ctor = ClusterProcess
            self._signalled: dict[str, bool] = {}  # name -> SIGKILL sent (else SIGTERM)
            self.after_start: Callable[[], None] = lambda: None

        def loop(self) -> None:
            def hang_up(signum: int, frame: FrameType | None) -> None:  # the terminal closed: as SIGTERM
                self._system_print("SIGHUP received\n")
                self.returncode = 129
                self.terminate()

            signal.signal(signal.SIGHUP, hang_up)  # honcho handles SIGINT and SIGTERM
            super().loop()

        def _start(self) -> None:
            super()._start()
            self.after_start()  # threads of ours only once honcho has forked its process runners

        def terminate(self) -> None:
            if self.stop_reason is None:
                stopped = [n for n, p in self._processes.items() if p.get("returncode") is not None]
                self.stop_reason = f"{', '.join(stopped)} exited" if stopped else "requested"
            self._terminating = True
            self._killall()

        def _killall(self, force: bool = False) -> None:
            for name, p in self._processes.items():
                if p.get("returncode") is not None or p.get("pid") is None:
                    continue
                if name in self._signalled and (self._signalled[name] or not force):
                    continue
                self._signalled[name] = force
                self._system_print(
                    f"sending {'SIGKILL' if force else 'SIGTERM'} to {name} (pid {p['pid']})\n"
                )
                (self._procmgr.kill if force else self._procmgr.terminate)(p["pid"])

        def _all_started(self) -> bool:
            # asked by every turn of honcho's loop: a process that reports its start after a stop was
            # asked gets its SIGTERM now
            if self._terminating:
                self._killall()
            return bool(super()._all_started())

        def returncodes(self) -> dict[str, int | None]:
            return {n: p.get("returncode") for n, p in self._processes.items()}

    return ClusterManager()


def _watch_ready(url: str, printer: Any, stop: threading.Event, timeout: float = 300.0) -> None:
    """Say once when the edges' port answers ``/healthz`` 200."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:  # noqa: S310 - http URL we built
                if resp.status == 200:
                    printer.system(f"ready: the edges answer on {url}")
                    return
        except OSError:
            pass
        stop.wait(0.5)


# --------------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------------


@cluster_app.command("up")
def up(
    edges: Annotated[int, typer.Option(min=1, max=64, help="edge processes, all on --port")] = 2,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes (one consumer group)")] = 2,
    port: Annotated[int, typer.Option(min=1, max=65535, help="the edges' one HTTP port")] = 8080,
    host: Annotated[str, typer.Option(help="the edges' bind address")] = "127.0.0.1",
    data_dir: Annotated[
        Path, typer.Option(help="Kafka and ClickHouse data, Procfile, logs; kept for the next up")
    ] = Path("var/cluster"),
    kafka_port: Annotated[int, typer.Option(min=1, max=65535, help="Kafka client port")] = 9092,
    kafka_controller_port: Annotated[int, typer.Option(min=1, max=65535, help="KRaft controller")] = 9093,
    clickhouse_port: Annotated[int, typer.Option(min=1, max=65535, help="ClickHouse HTTP port")] = 8123,
    clickhouse_tcp_port: Annotated[int, typer.Option(min=1, max=65535, help="ClickHouse native")] = 9000,
    metrics_port: Annotated[
        int, typer.Option(min=0, max=65535, help="worker i's /metrics on this + i - 1 (0: none)")
    ] = 9465,
    partitions: Annotated[
        int | None,
        typer.Option(min=1, max=1000, help="partitions of the topics (default TRACKPIPE_PARTITIONS)"),
    ] = None,
    stop_timeout: Annotated[
        float, typer.Option(min=1, help="seconds an edge or worker may take to stop before SIGKILL")
    ] = 30.0,
) -> None:
    """Start Kafka, ClickHouse, the topics and schema, EDGES edges on one port and WORKERS workers;
    Ctrl-C (or SIGTERM) stops them all, the servers last. Exit 0 when stopped so and cleanly."""
    from trackpipe.cli import _settings

    ports = ClusterPorts(
        port, kafka_port, kafka_controller_port, clickhouse_port, clickhouse_tcp_port, metrics_port
    )
    data_dir = data_dir.resolve()
    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    named = ports.named(workers)
    clashes = duplicate_ports(named)
    if clashes:
        typer.echo(f"the same port twice: {'; '.join(clashes)}", err=True)
        raise typer.Exit(EXIT_BAD_SETUP)
    if metrics_port + workers - 1 > 65535:
        typer.echo(f"--metrics-port {metrics_port} leaves no port for worker.{workers}", err=True)
        raise typer.Exit(EXIT_BAD_SETUP)
    partitions = partitions or _settings().partitions
    shared = shared_environment(host, ports, partitions)
    settings = _settings(**{k.removeprefix("TRACKPIPE_").lower(): v for k, v in shared.items()})
    if workers > partitions:
        typer.echo(f"note: {workers} workers share {partitions} partitions: {workers - partitions} will idle")
    try:
        with data_dir_lock(data_dir):
            busy = busy_ports(host, named[:1]) + busy_ports("127.0.0.1", named[1:])
            if busy:
                raise _SetupError(
                    "ports in use (choose others with the --*-port options):\n  " + "\n  ".join(busy)
                )
            problem = check_partitions(data_dir, partitions)
            if problem:
                raise _SetupError(problem)
            code = _run(settings, ports, edges, workers, data_dir, shared, stop_timeout)
    except _SetupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BAD_SETUP) from None
    raise typer.Exit(code)


def _run(
    settings: Any,
    ports: ClusterPorts,
    edges: int,
    workers: int,
    data_dir: Path,
    shared: dict[str, str],
    stop_timeout: float,
) -> int:
    from trackpipe.devservers.clickhouse import ClickHouseServer, ClickHouseServerError
    from trackpipe.devservers.kafka import KafkaError

    log_dir = data_dir / "logs"
    printer = _tee_printer(sys.stdout, log_dir)
    printer.width = max(len(SYSTEM_NAME), len(f"edge.{edges}"), len(f"worker.{workers}"))  # aligned at once
    say = printer.system
    say(f"=== trackpipe cluster up {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}: data in {data_dir}")

    def interrupted(signum: int, _frame: FrameType | None) -> None:
        raise _Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupted) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    clickhouse = ClickHouseServer(
        http_port=ports.clickhouse_http,
        tcp_port=ports.clickhouse_tcp,
        data_dir=data_dir / "clickhouse",
        keep=True,  # its work dir holds the server log: appended to logs/clickhouse.log at stop
        own_session=True,  # a Ctrl-C in the terminal reaches us only: the server stops after the workers
    )
    kafka = persistent_kafka(data_dir / "kafka", ports.kafka, ports.kafka_controller)
    kafka_log = log_dir / "kafka.log"
    with contextlib.suppress(FileNotFoundError):
        kafka_log.unlink()
    kafka_log.symlink_to(Path("..") / "kafka" / "broker.log")
    code = EXIT_PROCESS_FAILED
    try:
        t0 = time.monotonic()
        clickhouse.start()
        say(
            f"clickhouse: http 127.0.0.1:{ports.clickhouse_http}, tcp 127.0.0.1:{ports.clickhouse_tcp} "
            f"(pid {clickhouse.pid}, {time.monotonic() - t0:.1f}s; log {clickhouse.log_path})"
        )
        t0 = time.monotonic()
        kafka.start()
        say(
            f"kafka: 127.0.0.1:{ports.kafka}, controller {ports.kafka_controller} "
            f"(pid {kafka.pid}, {time.monotonic() - t0:.1f}s; log {kafka_log})"
        )
        say(_prepare(settings))
        code = _serve(settings, ports, edges, workers, data_dir, shared, stop_timeout, printer)
    except _Interrupted as exc:
        say(f"{exc} received while starting: stopping")
        code = 0
    except (KafkaError, ClickHouseServerError) as exc:
        say(f"a server did not start: {exc}")
    except Exception as exc:
        say(f"cannot start the cluster: {type(exc).__name__}: {exc}")
    finally:
        for s in previous:  # the servers' stop must not be cut short by another Ctrl-C
            signal.signal(s, lambda signum, frame: say(f"{signal.Signals(signum).name}: still stopping"))
        _stop_servers(kafka, clickhouse, log_dir / "clickhouse.log", say)
        for s, handler in previous.items():
            signal.signal(s, handler)
        printer.close()
    return code


def _prepare(settings: Any) -> str:
    """``trackpipe topics create`` and ``trackpipe migrate`` against the cluster's servers."""
    import asyncio

    from sinks.migrate import migrate
    from sinks.report_retention import apply_retention
    from trackpipe.distributed import ensure_topics, server_backend

    created = asyncio.run(ensure_topics(settings))
    backend = server_backend(settings, create_database=True)
    try:
        applied = migrate(backend)
        apply_retention(backend, settings.retention_days)
    finally:
        backend.close()
    names = ", ".join(m.name for m in applied) or "nothing (up to date)"
    return (
        f"topics {settings.kafka_topic}.*: {'created' if created else 'exist'} "
        f"({settings.partitions} partitions); "
        f"database {settings.clickhouse_database}: applied {names}"
    )


def _serve(
    settings: Any,
    ports: ClusterPorts,
    edges: int,
    workers: int,
    data_dir: Path,
    shared: dict[str, str],
    stop_timeout: float,
    printer: Any,
) -> int:
    procfile = procfile_text(settings.host, ports.edge)
    (data_dir / "Procfile").write_text(procfile, encoding="utf-8")
    (data_dir / "cluster.env").write_text(env_file_text(shared), encoding="utf-8")
    base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    specs = plan_processes(procfile, edges, workers, {**base_env, **shared}, data_dir, ports.worker_metrics)
    manager = _manager(printer, stop_timeout)
    for spec in specs:
        spec.cwd.mkdir(parents=True, exist_ok=True)
        manager.add_process(spec.name, spec.cmd, env=spec.env, cwd=str(spec.cwd))
    url = f"http://{settings.host}:{ports.edge}"
    metrics = (
        f"workers' /metrics on 127.0.0.1:{ports.worker_metrics}..{ports.worker_metrics + workers - 1}"
        if ports.worker_metrics
        else "workers' /metrics off"
    )
    printer.system(
        f"starting {edges} edge(s) on {url} (one port) and {workers} worker(s); {metrics}; "
        f"Procfile and cluster.env in {data_dir}; logs in {data_dir / 'logs'}; Ctrl-C stops everything"
    )
    stop_watch = threading.Event()
    watcher = threading.Thread(
        target=_watch_ready, args=(url, printer, stop_watch), name="cluster-ready", daemon=True
    )
    manager.after_start = watcher.start
    try:
        manager.loop()
    finally:
        stop_watch.set()
        if watcher.is_alive():
            watcher.join(5)
    codes = manager.returncodes()
    summary = ", ".join(f"{n} {c}" for n, c in codes.items())
    clean = manager.stop_reason == "requested" and all(c == 0 for c in codes.values())
    printer.system(f"processes stopped ({manager.stop_reason}): exit codes {summary}")
    return 0 if clean else EXIT_PROCESS_FAILED


def _stop_servers(kafka: Any, clickhouse: Any, clickhouse_log: Path, say: Any) -> None:
    t0 = time.monotonic()
    if kafka.running:
        kafka.stop()
        say(f"kafka stopped ({time.monotonic() - t0:.1f}s)")
    t0 = time.monotonic()
    running = clickhouse.is_running()
    workdir = clickhouse.workdir
    clickhouse.stop()
    if running:
        say(f"clickhouse stopped ({time.monotonic() - t0:.1f}s)")
    if workdir is not None:
        log = workdir / "server.log"
        if log.exists():
            with open(clickhouse_log, "ab") as out:
                out.write(log.read_bytes())
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
