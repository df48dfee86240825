"""Dedicated process that turns chdb-core's embedded ClickHouse engine into a real server.

Run by :class:`trackpipe.devservers.clickhouse.ClickHouseServer`; not meant to be started by hand
(use ``python -m trackpipe.devservers.clickhouse`` for that).

How it works (chdb-core 26.9 / chdb 4.4):

* chdb's ``Session``/``connect`` path cannot open listeners ("start_servers_callback is not set"),
  but the *stateless* entry point ``_chdb.query(sql, output_format, path=...)`` runs a full
  clickhouse-local engine for the duration of one call, and that engine honours
  ``SYSTEM START LISTEN HTTP|TCP``.
* ``_chdb.abi3.so`` is loaded directly. Importing the ``chdb`` package is avoided on purpose: its
  ``__init__`` opens an in-memory connection, and a second engine in the same process fails with
  "EventNotifier is initialized twice".
* Listen host and ports are read only from ``config.xml`` in the process's working directory, so the
  process writes one there (the caller sets ``cwd`` to a private work directory).
* The stateless call runs ``SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP;`` followed by one
  query that never ends on its own (a ``sleepEachRow`` filter over ``system.numbers``, negligible CPU).
  The output format of that call (``TabSeparated``) becomes the HTTP interface's default format.
* The call runs in a worker thread (the engine releases the GIL). On SIGTERM/SIGINT, or when the
  parent process disappears, the main thread sends ``KILL QUERY`` for the holding query over our own
  HTTP port; the stateless call then returns, the engine shuts down and the process exits 0. If
  clients still hold idle keep-alive connections, the engine's shutdown waits for them (~5 s, then it
  exits the process with status 1); the process does not wait that long but leaves via ``os._exit``
  after ``--shutdown-grace`` seconds (default 1).
* A listen failure (port in use) is only printed on stderr by the engine, after which the stateless
  call returns early without an error flag. The holding query ending before a stop was requested is
  therefore treated as a startup failure: exit code ``EXIT_ENGINE_ENDED`` (3).

Only stdlib imports here: this module must not pull in the ``chdb`` package or project code.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.machinery
import importlib.util
import os
import re
import shutil
import signal
import sys
import threading
import urllib.request
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

EXIT_OK = 0
EXIT_ENGINE_ENDED = 3
EXIT_STOP_FAILED = 4

#: Text marker embedded (as a SQL comment) in the holding query; followed by the per-server token.
HOLD_MARKER = "trackpipe-devserver-hold"

_TOKEN_RE = re.compile(r"^[0-9a-f]{8,64}$")
_RTLD_DEEPBIND = 0x00008


def find_engine_library() -> Path:
    """Locate ``chdb/_chdb.abi3.so`` without executing ``chdb/__init__``."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("chdb")  # locating a top-level package does not execute it
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) / "_chdb.abi3.so" for p in spec.submodule_search_locations)
    # chdb-core may live in another sys.path entry than the chdb wrapper (editable installs).
    candidates.extend(Path(p) / "chdb" / "_chdb.abi3.so" for p in sys.path if p)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("chdb-core engine (chdb/_chdb.abi3.so) not found; is chdb-core installed?")


def load_engine(library: Path) -> ModuleType:
    """Load the ``_chdb`` extension module from ``library`` as a standalone module."""
    if sys.platform.startswith("linux"):
        # Same preload the chdb package does: resolve the engine's own symbols first
        # (RTLD_DEEPBIND) so they cannot be interposed by other loaded libraries.
        try:
            ctypes.CDLL(str(library), mode=sys.getdlopenflags() | _RTLD_DEEPBIND)
        except OSError:
            pass
    loader = importlib.machinery.ExtensionFileLoader("_chdb", str(library))
    spec = importlib.util.spec_from_file_location("_chdb", str(library), loader=loader)
    if spec is None:
        raise ImportError(f"cannot create a module spec for {library}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def write_config(directory: Path, listen_host: str, http_port: int, tcp_port: int) -> Path:
    config = directory / "config.xml"
    config.write_text(
        "<clickhouse>\n"
        f"    <listen_host>{listen_host}</listen_host>\n"
        f"    <http_port>{http_port}</http_port>\n"
        f"    <tcp_port>{tcp_port}</tcp_port>\n"
        "</clickhouse>\n",
        encoding="utf-8",
    )
    return config


def serving_script(token: str) -> str:
    """Statements run by the stateless engine call: open listeners, then hold the engine open."""
    return (
        "SYSTEM START LISTEN HTTP;\n"
        "SYSTEM START LISTEN TCP;\n"
        "SELECT count() FROM system.numbers WHERE sleepEachRow(0.2) "
        f"/* {HOLD_MARKER} {token} */ "
        "SETTINGS max_block_size = 1, max_threads = 1, max_execution_time = 0"
    )


def hold_query_filter(token: str) -> str:
    """A WHERE condition matching the holding query but not the query that contains the condition.

    The marker and the token are concatenated at run time, so this text never contains them adjacently.
    """
    return f"query LIKE concat('%{HOLD_MARKER} ', '{token}', '%')"


def _http_post(host: str, port: int, sql: str, timeout: float) -> str:
    request = urllib.request.Request(f"http://{host}:{port}/", data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - fixed http URL
        return str(response.read().decode())


def _token(value: str) -> str:
    if not _TOKEN_RE.match(value):
        raise argparse.ArgumentTypeError("token must be 8-64 lowercase hex characters")
    return value


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"invalid port {value}")
    return port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trackpipe.devservers.clickhouse_proc")
    parser.add_argument("--http-port", type=_port, required=True)
    parser.add_argument("--tcp-port", type=_port, required=True)
    parser.add_argument("--data", required=True, help="engine data directory")
    parser.add_argument("--token", type=_token, required=True, help="identifies this server's holding query")
    parser.add_argument("--listen-host", default="127.0.0.1", choices=["127.0.0.1"])
    parser.add_argument("--parent-pid", type=int, default=0, help="stop when this process is gone (0: never)")
    parser.add_argument(
        "--remove-workdir-if-orphaned",
        action="store_true",
        help="after stopping because the parent is gone, delete the working directory (nobody else will)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=1.0,
        help="seconds to wait for a clean engine shutdown after the holding query is killed",
    )
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(f"[clickhouse_proc {os.getpid()}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path.cwd()
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    write_config(workdir, args.listen_host, args.http_port, args.tcp_port)

    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    engine = load_engine(find_engine_library())
    outcome: dict[str, Any] = {}

    def serve() -> None:
        try:
            result = engine.query(serving_script(args.token), "TabSeparated", path=str(data))
            outcome["error"] = result.error_message() if result.has_error() else None
        except BaseException as exc:  # reported by the main thread
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    server_thread = threading.Thread(target=serve, name="clickhouse-engine", daemon=True)
    server_thread.start()
    _log(f"engine starting: http={args.listen_host}:{args.http_port} tcp={args.listen_host}:{args.tcp_port}")

    orphaned = False
    while not stop_requested.wait(0.1):
        if not server_thread.is_alive():
            detail = outcome.get("error") or "see the engine messages above (port already in use?)"
            _log(f"engine query ended before a stop was requested: {detail}")
            return EXIT_ENGINE_ENDED
        if args.parent_pid and os.getppid() != args.parent_pid:
            _log("parent process is gone; stopping")
            orphaned = True
            break

    _log("stopping: killing the holding query")
    hard_exit: int | None = None  # exit code for leaving without waiting for the engine
    try:
        _http_post(
            args.listen_host,
            args.http_port,
            f"KILL QUERY WHERE {hold_query_filter(args.token)} ASYNC",
            timeout=5.0,
        )
    except OSError as exc:
        _log(f"KILL QUERY failed ({exc}); exiting without a clean engine shutdown")
        hard_exit = EXIT_STOP_FAILED
    else:
        server_thread.join(args.shutdown_grace)
        if server_thread.is_alive():
            # The engine's shutdown waits for open HTTP keep-alive connections of idle clients (and then
            # exits the process itself after ~5 s). For a dev/test server, exiting now is fine: acknowledged
            # inserts are on disk, anything still in flight is abandoned as in a crash.
            _log(f"engine still closing client connections after {args.shutdown_grace:g}s; exiting now")
            hard_exit = EXIT_OK
        else:
            _log("stopped")
    if orphaned and args.remove_workdir_if_orphaned:
        shutil.rmtree(workdir, ignore_errors=True)
    if hard_exit is not None:
        sys.stderr.flush()
        os._exit(hard_exit)  # the engine thread is still inside the engine: skip interpreter teardown
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
