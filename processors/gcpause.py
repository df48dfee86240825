"""The cyclic garbage collector paused while a batch runs through the cores.

A batch allocates hundreds of thousands of short-lived container objects (decoded events, messages, rows)
next to the live state of every visitor touched. With the collector on, every few hundred allocations
start a young collection and, as the live state grows, full collections traverse all of it: measured at
about half of the cores' CPU time (``python -m bench --only cores``: 9.3k -> 20.2k events per core-second
with the collector off). The cores create no reference cycles per event that must be freed within the
batch; reference counting frees nearly everything, and the collector runs as usual once the batch is done
(its counters then start a collection at the next allocation).

The Faust worker pauses it for a whole batch instead (:class:`SharedPause`, process through commit):
collecting when the cores return found the batch's decoded events and rows still alive, waiting for their
write, and traversed and promoted them (~10-15% of the worker's CPU, decision 161).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
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


class SharedPause:
    """The collector paused while any of several concurrent batches is in flight (tasks of one event
    loop: the Faust worker's stages overlap, each awaiting its write while another processes). Each
    batch's objects are then freed by reference counting before the collector runs, instead of being
    traversed (and promoted) by a collection that another batch's end starts (decision 161).

    The collector runs again once no batch is in flight, or at the end of a batch when it has been
    paused for ``max_s`` seconds (batches that overlap without a gap never hold it off for longer); it
    starts a collection at the next allocation. A no-op when the application turned it off itself."""

    def __init__(self, max_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.max_s = max_s
        self.clock = clock
        self.in_flight = 0
        self.paused_at: float | None = None  # set while this pause holds the collector off

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if self.paused_at is None and gc.isenabled():
            gc.disable()
            self.paused_at = self.clock()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.paused_at is not None and (
                self.in_flight == 0 or self.clock() - self.paused_at >= self.max_s
            ):
                self.paused_at = None
                gc.enable()
