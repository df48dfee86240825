"""The collector paused across overlapping batches (the Faust worker's stages, decision 161)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from processors.gcpause import SharedPause, gc_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_off_while_any_batch_is_in_flight_and_on_once_none_is():
    pause = SharedPause(max_s=5.0, clock=Clock())
    a, b = pause(), pause()
    a.__enter__()
    assert not gc.isenabled()
    b.__enter__()  # overlaps a
    a.__exit__(None, None, None)
    assert not gc.isenabled()  # b still in flight
    b.__exit__(None, None, None)
    assert gc.isenabled()


def test_batches_overlapping_without_a_gap_hold_it_off_at_most_max_s():
    clock = Clock()
    pause = SharedPause(max_s=5.0, clock=clock)
    first = pause()
    first.__enter__()
    for _ in range(3):  # each batch starts before the previous one ends
        clock.now += 2.0
        nxt = pause()
        nxt.__enter__()
        first.__exit__(None, None, None)
        first = nxt
        if clock.now >= 5.0:
            break
        assert not gc.isenabled()
    assert gc.isenabled()  # paused for 6 s at the end of a batch: on again
    clock.now += 1.0
    with pause():  # the next batch pauses it again
        assert not gc.isenabled()
    assert not gc.isenabled()  # `first` is still in flight
    first.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_failing_batch_turns_it_back_on():
    pause = SharedPause()
    with pytest.raises(RuntimeError), pause():
        raise RuntimeError("write refused")
    assert gc.isenabled()


def test_left_alone_when_the_application_turned_it_off():
    gc.disable()
    pause = SharedPause()
    with pause():
        assert not gc.isenabled()
    assert not gc.isenabled()
    with gc_paused():
        pass
    assert not gc.isenabled()
