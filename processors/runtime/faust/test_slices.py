"""A stream batch is run in slices bounded by the bytes of its records, in order, none empty."""

from __future__ import annotations

from dataclasses import dataclass

from processors.runtime.faust.app import slices


@dataclass
class Ev:
    value: bytes


def test_slices_keep_order_and_cut_by_bytes():
    events = [Ev(b"x" * n) for n in (4, 4, 4, 10, 1, 1)]
    parts = slices(events, limit=8)
    assert [[len(e.value) for e in p] for p in parts] == [[4, 4], [4], [10], [1, 1]]
    assert [e for p in parts for e in p] == events


def test_a_record_over_the_limit_is_a_slice_of_its_own_and_nothing_is_empty():
    assert slices([], limit=8) == []
    big = [Ev(b"x" * 20)]
    assert slices(big, limit=8) == [big]
