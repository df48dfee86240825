"""The keys every results file holds (paths into the JSON object), each a number."""

from __future__ import annotations

from typing import Any

REQUIRED = (
    "edge.events_per_s",
    "edge.baseline_events_per_s",
    "edge.batch_events_per_s",
    "edge.p99_ms",
    "edge.peak_rss_mb",
    "edge.saturation.events_per_s",
    "edge.saturation.baseline_events_per_s",
    "edge.saturation.batch_events_per_s",
    "edge.saturation.batch_baseline_events_per_s",
    "edge.saturation.p99_ms_at_half",
    "edge.saturation.baseline_p99_ms_at_half",
    "edge.cpu_s_per_1k",
    "edge.baseline_cpu_s_per_1k",
    "edge.batch_cpu_s_per_1k",
    "edge.batch_baseline_cpu_s_per_1k",
    "worker.events_per_s",
    "worker.baseline_events_per_s",
    "worker.peak_rss_mb",
    "worker.rss_mb_per_100k_events",
    "worker.bytes_per_active_visitor",
    "cores.events_per_s",
    "sink.rows_per_s",
    "sink.baseline_rows_per_s",
    "e2e.p50_s",
    "e2e.p95_s",
    "e2e.p99_s",
    "e2e.embedded.p99_ms_backlog",
    "e2e.embedded.p99_ms_idle",
    "report.top5_ms",
    "report.top5_exact_ms",
    "report.conversion_heavy.top5_ms",
    "report.conversion_heavy.top5_exact_ms",
    "report.events",
    "machine.cores",
    "outbound.p50_s",
    "outbound.p95_s",
    "outbound.deliveries_per_s",
    "outbound.spread.p95_s",
    "outbound.spread.deliveries_per_s",
    "outbound.down.lost",
    "alerts.p50_s",
    "alerts.p95_s",
    "alerts.capacity.rules_x_projects",
)
#: Text facts: versions and the date.
REQUIRED_TEXT = ("machine.python", "machine.kafka", "machine.clickhouse", "date")


def lookup(results: dict[str, Any], path: str) -> Any:
    node: Any = results
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def missing(results: dict[str, Any]) -> list[str]:
    """Required keys that are absent or not numbers (or empty text)."""
    bad = []
    for path in REQUIRED:
        v = lookup(results, path)
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
            bad.append(path)
    bad += [p for p in REQUIRED_TEXT if not isinstance(lookup(results, p), str) or not lookup(results, p)]
    return bad
