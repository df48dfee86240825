"""The worker gives the memory its batches freed back to the system (issue 16 item 2, decision 165)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trackpipe.memory_release import MemoryRelease, _libc
from trackpipe.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_release_runs_at_most_once_per_interval() -> None:
    now = [100.0]
    release = MemoryRelease(every_s=1.0, clock=lambda: now[0])
    for _ in range(5):  # five batches within 0.4 s: one release
        release()
        now[0] += 0.1
    assert release.releases == 1
    now[0] += 1.0
    release()
    release()
    assert release.releases == 2


# A process that frees most of 200 MB of heap objects (64 kB each: below the mmap threshold, so they
# live in the heap) but keeps every 50th alive, the pattern a batch leaves behind: without a release
# glibc keeps every page of it.
_CHILD = textwrap.dedent(
    """
    import json, sys
    from trackpipe.memory_release import MemoryRelease

    def rss_mb():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    release = MemoryRelease(every_s=0.0)
    blocks = [bytes(64 * 1024) + bytes([i % 251]) for i in range(3200)]
    kept = blocks[::50]
    del blocks
    before = rss_mb()
    release()
    after = rss_mb()
    glibc = release.libc is not None
    print(json.dumps({"glibc": glibc, "before": before, "after": after, "kept": len(kept)}))
    """
)


def test_freed_heap_goes_back_to_the_system() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout)
    assert result["glibc"] == (_libc() is not None)
    if not result["glibc"]:  # musl or macOS: nothing to give back through malloc_trim, and no error
        assert result["after"] > 0
        return
    # ~200 MB were freed but held by the heap; ~4 MB stay live
    assert result["before"] - result["after"] > 120, result


def test_worker_app_takes_fetch_size_and_release_from_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import trackpipe.distributed as distributed

    monkeypatch.setenv("TRACKPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(distributed, "server_backend", lambda settings, **kw: object())  # no ClickHouse
    built: dict[str, object] = {}
    import processors.runtime.faust.app as faust_app_module  # build_worker_app imports it when called

    original = faust_app_module.build_faust_app

    def spy(**kwargs: object) -> object:
        built.update(kwargs)
        return original(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(faust_app_module, "build_faust_app", spy)
    app = distributed.build_worker_app(Settings(worker_fetch_bytes=123_456, worker_release_memory_s=2.5))
    assert app.conf.consumer_max_fetch_size == 123_456
    after = built["after_batch"]
    assert isinstance(after, MemoryRelease) and after.every_s == 2.5

    distributed.build_worker_app(Settings(worker_release_memory_s=0))
    assert built["after_batch"] is None


# libarrow's C++ code takes its default pool from the environment when pyarrow is imported: the worker
# command chooses before anything imports pyarrow, as this child does
_POOL_CHILD = textwrap.dedent(
    """
    import os, sys
    from trackpipe.memory_release import use_system_arrow_pool
    assert "pyarrow" not in sys.modules
    print(use_system_arrow_pool(), os.environ["ARROW_DEFAULT_MEMORY_POOL"])
    """
)


@pytest.mark.parametrize(("chosen", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_arrow_allocates_through_glibc_unless_chosen(chosen: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    out = subprocess.run(
        [sys.executable, "-c", _POOL_CHILD], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [expected, expected]


def test_the_worker_app_gives_arrow_the_system_pool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pyarrow as pa

    import trackpipe.distributed as distributed

    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "")  # restored (unset) after the test
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
    monkeypatch.setenv("TRACKPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(distributed, "server_backend", lambda settings, **kw: object())  # no ClickHouse
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    try:
        distributed.build_worker_app(Settings())
        assert pa.default_memory_pool().backend_name == "system"
    finally:
        pa.set_memory_pool(before)


# `trackpipe worker` prepares its process before anything of the worker is imported: the stub below
# stands in for the worker's wiring and reports what the sink's first Arrow build finds
_WORKER_CHILD = textwrap.dedent(
    """
    import sys, types
    from typer.testing import CliRunner

    def run_worker(settings):
        import pyarrow as pa
        table = pa.table({"n": pa.array([1, None], type=pa.int64()), "s": pa.array(["a", None])})
        print(pa.default_memory_pool().backend_name, "pandas" in sys.modules, table.num_rows)

    stub = types.ModuleType("trackpipe.distributed")
    stub.run_worker = run_worker
    sys.modules["trackpipe.distributed"] = stub
    from trackpipe.cli import app

    result = CliRunner().invoke(app, ["worker"])
    print(result.exit_code, result.output.strip())
    """
)


def test_the_worker_command_keeps_pandas_out_and_gives_arrow_glibc(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    env.update(TRACKPIPE_DATA_DIR=str(tmp_path), TRACKPIPE_WORKER_STORE="memory://")
    out = subprocess.run(
        [sys.executable, "-c", _WORKER_CHILD], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "system", "False", "2"], out.stdout + out.stderr


def test_keep_pandas_out_says_when_it_is_too_late() -> None:
    code = "import pandas\nfrom trackpipe.memory_release import keep_pandas_out\nprint(keep_pandas_out())\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
