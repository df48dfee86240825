"""Outbound delivery metrics (issue 13), for the edge's ``/metrics`` (embedded) and the worker's.

:class:`OutboundCounts` is an :class:`~trackpipe.outbound.loop.AttemptObserver` keeping plain counters
(no Prometheus call in the delivery path); :class:`OutboundCollector` reads them at scrape time, with the
queue's depth and the age of its oldest due delivery as last computed by the delivery loop
(``DeliveryLoop.queue_stats``; the scrape never touches the store):

* ``trackpipe_outbound_attempts_total{kind}``: attempts made (``kind``: webhook, postback)
* ``trackpipe_outbound_deliveries_total{kind,result}``: deliveries finished, ``delivered`` or ``dead``
* ``trackpipe_outbound_failures_total{kind,reason}``: failed attempts by ``FailureReason``
* ``trackpipe_outbound_first_attempt_seconds``: from a delivery's planning to its first attempt
* ``trackpipe_outbound_queue_depth``, ``trackpipe_outbound_oldest_due_seconds``: pending or failed
  deliveries waiting, and how late the oldest due one is
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from sinks.outbound.delivery_log import kind_of
from sinks.outbound.schedule import Delivery, DeliveryStatus
from sinks.outbound.sender import AttemptResult
from trackpipe.outbound.loop import DueRow

FIRST_ATTEMPT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0)

#: The queue's (depth, age in seconds of the oldest due delivery), None until first computed.
QueueStats = Callable[[], "tuple[int, float] | None"]


class OutboundCounts:
    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()
        self.finished: Counter[tuple[str, str]] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()
        self.first_buckets = [0] * (len(FIRST_ATTEMPT_BUCKETS) + 1)  # the last: above every bound
        self.first_sum = 0.0

    def attempted(
        self,
        row: DueRow,
        new: Delivery,
        result: AttemptResult | None,
        at: datetime,
        dead_reason: str | None,
    ) -> None:
        kind = kind_of(row.event)
        if result is not None:
            self.attempts[kind] += 1
            if result.reason is not None:
                self.failures[kind, result.reason.value] += 1
            if new.attempts == 1 and row.created_at > 0:
                waited = max(0.0, at.timestamp() - row.created_at)
                self.first_buckets[bisect.bisect_left(FIRST_ATTEMPT_BUCKETS, waited)] += 1
                self.first_sum += waited
        if new.status is DeliveryStatus.DELIVERED:
            self.finished[kind, "delivered"] += 1
        elif new.status is DeliveryStatus.DEAD:
            self.finished[kind, "dead"] += 1


class OutboundCollector(Collector):
    def __init__(self, counts: OutboundCounts, queue: QueueStats | None = None):
        self.counts = counts
        self.queue = queue

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        c = self.counts
        attempts = CounterMetricFamily(
            "trackpipe_outbound_attempts", "delivery attempts made", labels=["kind"]
        )
        for kind, n in sorted(c.attempts.items()):
            attempts.add_metric([kind], n)
        yield attempts
        finished = CounterMetricFamily(
            "trackpipe_outbound_deliveries",
            "deliveries finished: delivered or dead",
            labels=["kind", "result"],
        )
        for (kind, result), n in sorted(c.finished.items()):
            finished.add_metric([kind, result], n)
        yield finished
        failures = CounterMetricFamily(
            "trackpipe_outbound_failures", "failed attempts by reason", labels=["kind", "reason"]
        )
        for (kind, reason), n in sorted(c.failures.items()):
            failures.add_metric([kind, reason], n)
        yield failures
        cumulative, buckets = 0, []
        for bound, n in zip((*map(str, FIRST_ATTEMPT_BUCKETS), "+Inf"), c.first_buckets, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        first = HistogramMetricFamily(
            "trackpipe_outbound_first_attempt_seconds", "from a delivery's planning to its first attempt"
        )
        first.add_metric([], buckets, c.first_sum)
        yield first
        stats = self.queue() if self.queue is not None else None
        if stats is not None:
            depth, oldest = stats
            yield GaugeMetricFamily(
                "trackpipe_outbound_queue_depth",
                "deliveries waiting to be sent (pending or failed)",
                value=depth,
            )
            yield GaugeMetricFamily(
                "trackpipe_outbound_oldest_due_seconds", "how late the oldest due delivery is", value=oldest
            )


def register_outbound(
    registry: CollectorRegistry, counts: OutboundCounts, queue: QueueStats | None = None
) -> None:
    registry.register(OutboundCollector(counts, queue))
