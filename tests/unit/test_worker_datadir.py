"""A RocksDB worker holds its data directory; a second worker there is refused at start (decision 167)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_HOLD = (
    "import sys; from pathlib import Path; from trackpipe.worker_datadir import worker_lock;"
    " print(worker_lock('rocksdb://', Path(sys.argv[1])), flush=True); sys.stdin.readline()"
)


def _worker_env(data_dir: Path, store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKPIPE_")}
    # nothing listens there: a worker that got past the lock would fail on Kafka, not exit 2 at once
    env.update(
        TRACKPIPE_DATA_DIR=str(data_dir),
        TRACKPIPE_WORKER_STORE=store,
        TRACKPIPE_KAFKA_BOOTSTRAP="127.0.0.1:9",
    )
    return env


def test_a_second_worker_in_the_same_data_dir_is_refused_until_the_first_is_gone(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "None"  # it holds the lock
        refused = subprocess.run(
            [sys.executable, "-m", "trackpipe.cli", "worker"],
            cwd=REPO,
            env=_worker_env(tmp_path, "rocksdb://"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2, refused.stderr
        assert f"pid {holder.pid}" in refused.stderr
        assert "each worker needs its own TRACKPIPE_DATA_DIR" in refused.stderr
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # the holder is gone (as after a crash: the lock goes with the process); the directory is free again
    again = subprocess.run(
        [sys.executable, "-c", _HOLD, str(tmp_path)],
        cwd=REPO,
        input="\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.stdout.strip() == "None", again.stderr


def test_a_memory_store_worker_takes_no_lock(tmp_path: Path) -> None:
    from trackpipe.worker_datadir import LOCK_NAME, worker_lock

    assert worker_lock("memory://", tmp_path) is None
    assert not (tmp_path / LOCK_NAME).exists()
