"""One `trackpipe worker` per data directory when its tables live in RocksDB (decision 167).

A worker with ``rocksdb://`` keeps one RocksDB per table and partition under ``<data dir>/faust``, and
RocksDB lets one process open a database. Two workers sharing a data directory would work until a
rebalance handed a partition from one to the other: the new owner could not open the database its peer
still holds, and would stop in the middle of the group's rebalance. So a worker takes an exclusive lock on
``<data dir>/worker.lock`` before anything else and refuses to start, saying what to do, when another
worker has it. The lock goes with the process (a crash or ``kill -9`` releases it; nothing to clean up)
and with an ``exec`` into a new generation, which takes it again.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "worker.lock"

_held: list[int] = []  # the lock's descriptor, for the life of the process


class DataDirInUse(RuntimeError):
    """Another live worker holds this data directory."""


def lock_data_dir(data_dir: Path) -> Path:
    """Take ``data_dir``'s worker lock for this process (idempotent); DataDirInUse if another has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    if _held:
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise DataDirInUse(
            f"another trackpipe worker (pid {holder}) uses the data directory {data_dir.resolve()}: with"
            " TRACKPIPE_WORKER_STORE=rocksdb:// each worker needs its own TRACKPIPE_DATA_DIR"
            " (or use memory://)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held.append(fd)
    return path


def worker_lock(store: str, data_dir: Path) -> str | None:
    """What refuses a worker with ``store`` in ``data_dir`` (None: it may start; the lock is taken for
    a RocksDB store, which is the only one that keeps files there)."""
    if not store.startswith("rocksdb"):
        return None
    try:
        lock_data_dir(data_dir)
    except DataDirInUse as exc:
        return str(exc)
    return None
