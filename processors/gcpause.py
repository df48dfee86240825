"""The cyclic garbage collector paused while a batch runs through the cores.

A batch allocates hundreds of thousands of short-lived container objects (decoded events, messages, rows)
next to the live state of every visitor touched. With the collector on, every few hundred allocations
start a young collection and, as the live state grows, full collections traverse all of it: measured at
about half of the cores' CPU time (``python -m bench --only cores``: 9.3k -> 20.2k events per core-second
with the collector off). The cores create no reference cycles per event that must be freed within the
batch; reference counting frees nearly everything, and the collector runs as usual once the batch is done
(its counters then start a collection at the next allocation).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause automatic collections for the ``with`` block (a no-op when they are already off, e.g. in a
    nested block or when the application turned them off itself)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
