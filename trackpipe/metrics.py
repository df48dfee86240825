"""The processors' outcome counts (processors.batch.OutcomeCounts) as Prometheus metrics.

The counts are plain counters kept by the batch runner; :class:`OutcomeCollector` reads them at scrape
time, so the processors never import prometheus_client. Both runtimes export the same families:

* ``trackpipe_processing_records_total{stage}``: input records committed
* ``trackpipe_processing_outcomes_total{stage,outcome,reason}``: ``dropped`` (reason: ``replay``,
  ``no_goal``), ``merged`` (a duplicate joined its conversion), ``dead_letter`` (reason:
  ``undecodable``, ``sink_rejected``)
* ``trackpipe_processing_rows_total{table}``: rows written to ClickHouse
* ``trackpipe_processing_batches_total{stage,result}``: ``committed``, ``retried`` (a retriable
  failure), ``rejected`` (a non-retriable one), ``quarantined``

The embedded mode's one pipeline reports its batches under stage ``embedded`` and its outcomes under
each stage's own name; the worker reports each stage's agent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from processors.batch import OutcomeCounts
from sinks import reports


class OutcomeCollector(Collector):
    def __init__(self, counts: OutcomeCounts):
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        counts = self.counts
        records = CounterMetricFamily(
            "trackpipe_processing_records", "input records committed by the processors", labels=["stage"]
        )
        for stage, n in sorted(counts.records.items()):
            records.add_metric([stage], n)
        yield records
        outcomes = CounterMetricFamily(
            "trackpipe_processing_outcomes",
            "messages dropped, merged or dead-lettered, by stage and reason",
            labels=["stage", "outcome", "reason"],
        )
        for (stage, outcome, reason), n in sorted(counts.outcomes.items()):
            outcomes.add_metric([stage, outcome, reason], n)
        yield outcomes
        rows = CounterMetricFamily(
            "trackpipe_processing_rows", "rows written to ClickHouse", labels=["table"]
        )
        for table, n in sorted(counts.rows.items()):
            rows.add_metric([table], n)
        yield rows
        batches = CounterMetricFamily(
            "trackpipe_processing_batches",
            "batch attempts by result: committed, retried, rejected, quarantined",
            labels=["stage", "result"],
        )
        for (stage, result), n in sorted(counts.batches.items()):
            batches.add_metric([stage, result], n)
        yield batches


class ReportReadings(Collector):
    """``trackpipe_report_top5_total{reading}``: Top-5 reports answered from the writers' counters
    (``counters``, decision 100) or by the exact reading (``exact``: no counters, a partial day, another
    rate base, or a project the counters do not cover)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "trackpipe_report_top5", "Top-5 reports by how they were read", labels=["reading"]
        )
        for reading in ("counters", "exact"):
            family.add_metric([reading], reports.TOP5_READINGS[reading])
        yield family


def register_outcomes(registry: CollectorRegistry, counts: OutcomeCounts) -> None:
    registry.register(OutcomeCollector(counts))


def register_reports(registry: CollectorRegistry) -> None:
    """An edge's ``/metrics``: how its Top-5 reports were read."""
    registry.register(ReportReadings())


def serve_worker_metrics(
    counts: OutcomeCounts, host: str, port: int, extra: Sequence[Collector] = ()
) -> CollectorRegistry:
    """The worker's ``/metrics`` (Faust's own web server is off): a Prometheus HTTP server on its own
    listen address. ``extra``: further collectors (e.g. ``trackpipe.outbound.metrics.OutboundCollector``)."""
    registry = CollectorRegistry()
    register_outcomes(registry, counts)
    for collector in extra:
        registry.register(collector)
    start_http_server(port, addr=host, registry=registry)
    return registry
