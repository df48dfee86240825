"""Giving back to the system the memory a worker's batches freed (issue 16 item 2, decision 165).

A batch's records, decoded events, rows and Arrow build (tens of MB) are freed when it is committed, but
glibc keeps freed heap pages, and its dynamic mmap threshold soon serves even multi-MB buffers (fetched
record batches, joined produce requests) from the heap, where one live object pins the pages around it.
So a worker's RSS kept the high-water of its busiest batches. Here, once at start, buffers of 256 kB and
more are made mmap'd (returned whole when freed), and after a committed batch, at most once per
``every_s``, the heap's free pages and Arrow's pool are given back.

The sink's Arrow builds run on the writer's thread; pyarrow's default pool (mimalloc in the wheels)
keeps that thread's freed pages: ~65 MB of a worker's high-water mark at 300k events while Arrow itself
held at most 6 MB (decision 172). ``use_system_arrow_pool`` gives Arrow glibc's malloc instead, which
the trim below returns, unless ``ARROW_DEFAULT_MEMORY_POOL`` names another pool.

pyarrow imports pandas, when it is installed (chdb requires it), at its first conversion of Python
values, only to ask whether they are a pandas object: +36 MB of heap and +19 MB of mapped libraries
that a worker never uses (decision 173). ``keep_pandas_out`` makes ``import pandas`` fail in the worker's
process, which pyarrow takes as "no pandas".

Only the wiring calls this: it is the process's allocator, not a processor's concern. On a C library
without ``mallopt``/``malloc_trim`` (musl, macOS) the glibc part is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.abc
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

#: glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: allocations of at least this size get their own mapping (glibc's default starts at 128 kB but rises
#: with each freed mapping up to 32 MB, which is what moved the worker's large buffers into the heap)
MMAP_THRESHOLD = 256 * 1024


def _libc() -> Any | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


def use_system_arrow_pool() -> str:
    """Arrow allocates through glibc's malloc (unless ``ARROW_DEFAULT_MEMORY_POOL`` chose a pool); the
    name of pyarrow's pool in use.

    libarrow reads the variable when pyarrow is imported, and only then does its C++ code (IPC writers,
    compute kernels) take the pool from it: a process calls this before importing pyarrow (the worker
    command does). Later, it sets pyarrow's own default pool, which ``pa.array`` and table builds use.
    """
    if "pyarrow" in sys.modules:  # too late for libarrow's own choice: the environment stays as it is
        chosen = os.environ.get("ARROW_DEFAULT_MEMORY_POOL") or "system"
    else:
        chosen = os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    import pyarrow as pa

    if chosen == "system":
        pa.set_memory_pool(pa.system_memory_pool())
    return str(pa.default_memory_pool().backend_name)


class _NoPandas(importlib.abc.MetaPathFinder):
    """``import pandas`` (and its submodules) raises ModuleNotFoundError."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(
                "pandas is kept out of this process (trackpipe decision 173)", name=fullname
            )
        return None


def keep_pandas_out() -> bool:
    """From here on this process cannot import pandas (it need not: the worker writes Arrow tables and
    reads rows); False if pandas was imported already."""
    if "pandas" in sys.modules:
        return False
    if not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
    return True


class MemoryRelease:
    """``after_batch`` of the worker app: returns freed memory at most once per ``every_s``."""

    def __init__(self, every_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self.clock = clock
        self.libc = _libc()
        self.last = float("-inf")
        self.releases = 0
        if self.libc is not None:
            self.libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)  # fixed: no longer rises (see above)
            self.libc.mallopt(M_TRIM_THRESHOLD, MMAP_THRESHOLD)
        else:
            log.info("no glibc malloc_trim here: the worker's freed heap is not given back between batches")

    def __call__(self) -> None:
        now = self.clock()
        if now - self.last < self.every_s:
            return
        self.last = now
        import pyarrow as pa  # the sink's Arrow build (already loaded in a worker)

        pa.default_memory_pool().release_unused()
        if self.libc is not None:
            self.libc.malloc_trim(0)
        self.releases += 1
