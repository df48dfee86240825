"""Child processes of the benchmark: start, wait until healthy, read their peak RSS and CPU, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parents[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: ours, the repository on PYTHONPATH (for ``-m bench.*``)."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"User-Agent": "trackpipe-bench"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Proc:
    """``python -m <module> <args>`` with its output in ``log_path``; stopped by SIGTERM (then SIGKILL)."""

    def __init__(self, module: str, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        self._log = open(log_path, "ab")  # closed in stop()
        if args[:1] == ["worker"] and "TRACKPIPE_DATA_DIR" not in (env or {}):
            # each worker its own data directory, as deployed (a RocksDB worker refuses a shared one)
            env = {**(env or {}), "TRACKPIPE_DATA_DIR": str(log_path.parent / f"{log_path.stem}-data")}
        self.p = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=child_env(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=log_path.parent,
        )

    @property
    def pid(self) -> int:
        return self.p.pid

    def wait_healthy(self, url: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.p.args} exited {self.p.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError):
                if http_get(url, timeout=2)[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.p.args} not healthy within {timeout}s:\n{self.tail()}")

    def peak_rss_mb(self) -> float:
        """Peak resident set size (VmHWM) of the process so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def rss_mb(self, field: str = "VmRSS") -> float:
        """Current resident set size (``VmRSS``; or ``RssAnon``, ``RssFile``) of the process."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return "<no log>"

    def stop(self, timeout: float = 30) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()
        return self.p.returncode


def run_module(module: str, args: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``python -m module args`` to completion; its stdout (raises with the output on failure)."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"{module} {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
        )
    return out.stdout


def alive(*procs: Proc) -> Callable[[], None]:
    """A check that raises when one of ``procs`` has exited (a benchmark must not wait on a dead pipeline)."""

    def check() -> None:
        for proc in procs:
            if proc.p.poll() is not None:
                raise RuntimeError(f"{' '.join(map(str, proc.p.args[2:4]))} exited with {proc.p.returncode}")

    return check
