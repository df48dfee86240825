"""The delivery log observer (buffering, batching, failures kept and bounded) with a fake insert, and the
outbound metrics observer and collector."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from sinks.outbound.delivery_log import AttemptRow
from sinks.outbound.schedule import Classified, Delivery, DeliveryStatus, FailureReason, Outcome
from sinks.outbound.sender import AttemptResult
from trackpipe.outbound.delivery_log import DeliveryLogObserver
from trackpipe.outbound.loop import DueRow
from trackpipe.outbound.metrics import OutboundCounts, register_outbound

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAIL = AttemptResult(Classified(Outcome.FAILURE, FailureReason.SERVER_ERROR), status=500)
OK = AttemptResult(Classified(Outcome.SUCCESS, None), status=204)


def _row(i: int, event: str = "conversion.tracked") -> DueRow:
    return DueRow(f"msg_{i}", "p", "g", "https://h.example/", b"{}", None, "pending", 0, 0, event,
                  created_at=T0.timestamp())  # fmt: skip


class FakeInsert:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str]] = []
        self.fail = 0  # fail this many calls
        self.lock = threading.Lock()

    def __call__(self, rows: Sequence[AttemptRow], token: str) -> None:
        with self.lock:
            if self.fail:
                self.fail -= 1
                self.calls.append(([], token))
                raise OSError("clickhouse away")
            self.calls.append(([r.delivery_id for r in rows], token))

    def written(self) -> list[str]:
        return [i for ids, _ in self.calls for i in ids]


def _observer(insert: FakeInsert, pool: ThreadPoolExecutor, **kw: float) -> DeliveryLogObserver:
    return DeliveryLogObserver(None, pool, insert=insert, **kw)  # type: ignore[arg-type]


async def _until(check: Callable[[], bool], deadline_s: float = 5.0) -> None:
    async with asyncio.timeout(deadline_s):
        while not check():  # noqa: ASYNC110 - polling what another thread does
            await asyncio.sleep(0.01)


async def test_rows_are_batched_by_time_and_size_and_never_block_the_caller() -> None:
    insert = FakeInsert()
    with ThreadPoolExecutor(1) as pool:
        obs = _observer(insert, pool, flush_s=0.05, batch_rows=3)
        await obs.start()
        for i in range(7):
            obs.attempted(_row(i), Delivery(DeliveryStatus.FAILED, T0, 1, 1), FAIL, T0, None)
        await _until(lambda: len(insert.written()) == 7)
        assert all(0 < len(ids) <= 3 for ids, _ in insert.calls)
        assert insert.written() == [f"msg_{i}" for i in range(7)]  # in order
        assert len({token for _, token in insert.calls}) == len(insert.calls)  # a token per batch
        obs.attempted(_row(9), Delivery(DeliveryStatus.DELIVERED, None, 1, 1), OK, T0, None)
        await obs.close()  # the last rows are flushed at shutdown
        assert insert.written()[-1] == "msg_9" and obs.buffered == 0 and obs.inserted == 8


async def test_a_failed_insert_is_retried_with_the_same_batch_and_token() -> None:
    insert = FakeInsert()
    insert.fail = 2
    with ThreadPoolExecutor(1) as pool:
        obs = _observer(insert, pool, flush_s=0.01, batch_rows=10, max_pause_s=0.02)
        await obs.start()
        for i in range(3):
            obs.attempted(_row(i), Delivery(DeliveryStatus.FAILED, T0, 1, 1), FAIL, T0, None)
        await _until(lambda: len(insert.written()) == 3)
        await obs.close()
    tokens = [token for _, token in insert.calls]
    assert len(tokens) == 3 and len(set(tokens)) == 1  # two failures, then the same batch went in
    assert obs.failures == 2 and obs.dropped == 0


async def test_while_clickhouse_is_away_the_buffer_is_bounded_oldest_dropped() -> None:
    insert = FakeInsert()
    insert.fail = 10**6
    with ThreadPoolExecutor(1) as pool:
        obs = _observer(insert, pool, flush_s=0.01, batch_rows=2, max_pause_s=0.01)
        obs.max_rows = 5
        obs.close_timeout_s = 0.2
        await obs.start()
        for i in range(20):
            obs.attempted(_row(i), Delivery(DeliveryStatus.FAILED, T0, 1, 1), FAIL, T0, None)
        assert obs.buffered <= 5 and obs.dropped >= 15
        await obs.close()  # gives up after its timeout, never raises


def test_metrics_count_attempts_results_reasons_and_first_attempt_time() -> None:
    counts = OutboundCounts()
    later = T0 + timedelta(seconds=0.3)
    counts.attempted(_row(1), Delivery(DeliveryStatus.FAILED, T0, 1, 1), FAIL, later, None)
    counts.attempted(_row(1), Delivery(DeliveryStatus.DEAD, None, 2, 2), FAIL, later, "exhausted")
    counts.attempted(_row(2, "postback"), Delivery(DeliveryStatus.DELIVERED, None, 1, 1), OK, later, None)
    counts.attempted(_row(3), Delivery(DeliveryStatus.DEAD, None, 0, 0), None, later, "no_goal")
    registry = CollectorRegistry()
    register_outbound(registry, counts, lambda: (4, 12.5))
    text = generate_latest(registry).decode()
    assert 'trackpipe_outbound_attempts_total{kind="webhook"} 2.0' in text
    assert 'trackpipe_outbound_attempts_total{kind="postback"} 1.0' in text
    assert 'trackpipe_outbound_deliveries_total{kind="webhook",result="dead"} 2.0' in text
    assert 'trackpipe_outbound_deliveries_total{kind="postback",result="delivered"} 1.0' in text
    assert 'trackpipe_outbound_failures_total{kind="webhook",reason="server_error"} 2.0' in text
    assert "trackpipe_outbound_first_attempt_seconds_count 2.0" in text
    assert 'trackpipe_outbound_first_attempt_seconds_bucket{le="0.25"} 0.0' in text
    assert 'trackpipe_outbound_first_attempt_seconds_bucket{le="0.5"} 2.0' in text
    assert (
        "trackpipe_outbound_queue_depth 4.0" in text and "trackpipe_outbound_oldest_due_seconds 12.5" in text
    )
    bare = CollectorRegistry()
    register_outbound(bare, OutboundCounts(), lambda: None)  # before the loop computed them: no gauges
    assert "queue_depth" not in generate_latest(bare).decode()
