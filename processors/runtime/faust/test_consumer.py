"""The commit and ordering rules that keep records from being skipped around rebalances (no broker:
the consumer is built but never started)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from processors.runtime.faust.app import build_faust_app
from processors.runtime.faust.consumer import GaplessConsumer, InOrderAdmission, StallWatchdog

EVENTS = "ev-topic"
EARLIEST = [0]  # the log start the `seeks` fixture answers with


async def _noop_writer(batch: Any, token: str) -> None:
    return None


@pytest.fixture
def consumer() -> GaplessConsumer:
    app = build_faust_app(
        app_id="unit-gapless",
        broker="kafka://127.0.0.1:1",
        topic=EVENTS,
        partitions=2,
        writer=_noop_writer,
    )
    c = app.consumer
    assert isinstance(c, GaplessConsumer)
    return c


def _acked(c: GaplessConsumer, tp: TP, offsets: list[int]) -> None:
    c._acked[tp].extend(offsets)
    c._acked_index[tp].update(offsets)


def test_never_commits_past_an_unacknowledged_first_record_of_a_fresh_partition(consumer):
    tp = TP(EVENTS, 0)
    consumer._floor[tp] = 0  # no committed offset yet: sought to the start (0)
    _acked(consumer, tp, [1, 2, 3])  # record 0 was dropped by a rebalance and not processed
    assert consumer._new_offset(tp) is None
    _acked(consumer, tp, [0])
    assert consumer._new_offset(tp) == 4


def test_never_commits_past_a_single_missing_record(consumer):
    tp = TP(EVENTS, 1)
    consumer._committed_offset[tp] = 11  # next to read: 11
    _acked(consumer, tp, [12, 13])  # stock Faust commits 14 here (off by one)
    assert consumer._new_offset(tp) is None
    _acked(consumer, tp, [11])
    assert consumer._new_offset(tp) == 14


def test_offsets_absent_from_the_log_do_not_block_commits(consumer):
    tp = TP(EVENTS, 0)
    consumer._committed_offset[tp] = 5
    consumer._gap[tp].addi(5, 8)  # 5..7 are not in the log (e.g. compacted away)
    _acked(consumer, tp, [8, 9])
    assert consumer._gap_covers(tp, 5, 8)
    assert not consumer._gap_covers(tp, 4, 8)
    assert consumer._new_offset(tp) == 10


def test_other_topics_keep_fausts_own_rule(consumer):
    tp = TP("some-changelog", 0)
    consumer._committed_offset[tp] = 3
    _acked(consumer, tp, [3, 4])
    assert consumer._new_offset(tp) == 5


def _app(consumer: GaplessConsumer, generation: int) -> Any:
    return SimpleNamespace(consumer=consumer, consumer_generation_id=generation)


def _events(tp: TP, offsets: list[int]) -> list[Any]:
    return [SimpleNamespace(message=SimpleNamespace(tp=tp, offset=o, acked=False)) for o in offsets]


@pytest.fixture
def seeks(consumer, monkeypatch) -> list[tuple[TP, int]]:
    """The consumer's broker calls, answered locally: assignment, earliest offsets (0), seeks."""
    done: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        raise AssertionError("Consumer.seek runs aiokafka's seek outside the consumer thread: use seek_wait")

    async def earliest(*tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, EARLIEST[0])

    async def seek_wait(partitions: dict[TP, int]) -> None:  # the consumer thread's seek (the one used)
        done.extend(partitions.items())

    EARLIEST[0] = 0
    monkeypatch.setattr(consumer, "seek", seek)
    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    monkeypatch.setattr(consumer, "earliest_offsets", earliest)
    monkeypatch.setattr(consumer, "assignment", lambda: {TP(EVENTS, 0), TP(EVENTS, 1)})
    return done


def _offsets(events: list[Any]) -> list[int]:
    return [e.message.offset for e in events]


async def test_admission_passes_records_in_order_and_skips_replays(consumer, seeks):
    tp = TP(EVENTS, 0)
    consumer._committed_offset[tp] = 10
    order = InOrderAdmission()
    app = _app(consumer, 1)
    assert _offsets(await order.admit(app, _events(tp, [8, 9, 10, 11, 12]))) == [10, 11, 12]
    assert _offsets(await order.admit(app, _events(tp, [11, 12, 13]))) == [13]
    assert seeks == []
    assert order.stats["replayed"] == 4


async def test_admission_forgets_records_after_a_hole_and_fetches_again(consumer, seeks):
    tp = TP(EVENTS, 1)
    consumer._committed_offset[tp] = 45
    order = InOrderAdmission(reseek_after_s=60, clock=lambda: 0.0)
    app = _app(consumer, 1)
    batch = _events(tp, [45, 59, 60])  # as seen in the two-worker test: 46..58 went missing
    assert _offsets(await order.admit(app, batch)) == [45]
    assert [e.message.acked for e in batch] == [False, True, True]  # never acknowledged
    assert seeks == [(tp, 46)]
    assert _offsets(await order.admit(app, _events(tp, [61]))) == []
    assert seeks == [(tp, 46)]  # one seek until the reseek delay
    assert _offsets(await order.admit(app, _events(tp, list(range(46, 62))))) == list(range(46, 62))


async def test_admission_leaves_revoked_partitions_to_their_new_owner(consumer, seeks):
    gone = TP(EVENTS, 3)
    assert await InOrderAdmission().admit(_app(consumer, 1), _events(gone, [0, 1])) == []


async def test_admission_starts_each_generation_at_the_committed_offset(consumer, seeks):
    tp = TP(EVENTS, 0)
    order = InOrderAdmission()
    consumer._committed_offset[tp] = 5
    assert _offsets(await order.admit(_app(consumer, 1), _events(tp, [5, 6, 7]))) == [5, 6, 7]
    consumer._committed_offset[tp] = 6  # another worker owned it meanwhile and committed less
    assert _offsets(await order.admit(_app(consumer, 2), _events(tp, [6, 7, 8]))) == [6, 7, 8]


async def test_admission_accepts_records_lost_to_retention(consumer, seeks):
    tp = TP(EVENTS, 1)
    consumer._committed_offset[tp] = 10  # 10..49 were deleted by retention before they were read
    EARLIEST[0] = 50
    assert _offsets(await InOrderAdmission().admit(_app(consumer, 1), _events(tp, [50, 51]))) == [50, 51]
    assert seeks == []


def _watch_app(consumer: GaplessConsumer, *, rebalancing: bool = False) -> Any:
    completed = SimpleNamespace(is_set=lambda: True)
    return SimpleNamespace(
        consumer=consumer,
        consumer_generation_id=1,
        rebalancing=rebalancing,
        tables=SimpleNamespace(recovery=SimpleNamespace(completed=completed)),
    )


async def test_watchdog_restarts_a_partition_with_waiting_records_and_no_progress(
    consumer, seeks, monkeypatch
):
    tp = TP(EVENTS, 0)
    ends = {tp: 19, TP(EVENTS, 1): 7}

    async def highwaters(*tps: TP) -> dict[TP, int]:
        return {t: ends[t] for t in tps}

    monkeypatch.setattr(consumer, "highwaters", highwaters)
    consumer._committed_offset[tp] = 15  # 15..18 waiting
    consumer._committed_offset[TP(EVENTS, 1)] = 7  # nothing waiting
    consumer.pause_partitions({tp})  # the state seen in the two-worker test
    now = [100.0]
    watchdog = StallWatchdog(InOrderAdmission(clock=lambda: now[0]), stall_after_s=15, clock=lambda: now[0])
    app = _watch_app(consumer)
    await watchdog.check(app)
    now[0] += 10
    await watchdog.check(app)
    assert seeks == []  # not stalled long enough yet
    await watchdog.check(_watch_app(consumer, rebalancing=True))  # a rebalance restarts the clock
    now[0] += 20
    await watchdog.check(app)
    assert seeks == []
    now[0] += 15
    await watchdog.check(app)
    assert seeks == [(tp, 15)]
    assert tp not in consumer._paused_partitions


async def test_watchdog_leaves_partitions_that_make_progress(consumer, seeks, monkeypatch):
    tp = TP(EVENTS, 0)

    async def highwaters(*tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, 100)

    monkeypatch.setattr(consumer, "highwaters", highwaters)
    monkeypatch.setattr(consumer, "assignment", lambda: {tp})
    consumer._committed_offset[tp] = 10
    now = [0.0]
    admission = InOrderAdmission(clock=lambda: now[0])
    watchdog = StallWatchdog(admission, stall_after_s=15, clock=lambda: now[0])
    for _ in range(10):
        offset = admission.expected.get(tp, 10)
        await admission.admit(_app(consumer, 1), _events(tp, [offset]))
        await watchdog.check(_watch_app(consumer))
        now[0] += 10
    assert seeks == []
