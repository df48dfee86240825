"""The Markdown summary printed at the end of a run: each stage next to its baseline and its target."""

from __future__ import annotations

from typing import Any

from bench.keys import lookup

_get = lookup


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "s":
        return f"{value:,.3f} s"
    if unit == "cpu":
        return f"{value:.4f} s"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "x":
        return f"{value:.0%}"
    return f"{value:,}"


# (label, ours, unit, baseline, target description, check(results) -> bool | None)
ROWS: list[tuple[str, str, str, str | None, str, Any]] = [
    (
        "edge, 1-event POSTs, best sustained over the concurrency sweep (accepted events)",
        "edge.saturation.events_per_s",
        "/s",
        "edge.saturation.baseline_events_per_s",
        ">= 70% of bare aiohttp at saturation",
        lambda r: _ratio_at_least(
            r, "edge.saturation.events_per_s", "edge.saturation.baseline_events_per_s", 0.7
        ),
    ),
    (
        "edge, 1-event POSTs, CPU-seconds per 1,000 events",
        "edge.cpu_s_per_1k",
        "cpu",
        "edge.baseline_cpu_s_per_1k",
        "",
        None,
    ),
    (
        "edge, 1-event POSTs p99, open loop at 50% of our best rate",
        "edge.saturation.p99_ms_at_half",
        "ms",
        "edge.saturation.baseline_p99_ms_at_half",
        "",
        None,
    ),
    (
        "edge, 50-event POSTs, best sustained over the concurrency sweep (accepted events)",
        "edge.saturation.batch_events_per_s",
        "/s",
        "edge.saturation.batch_baseline_events_per_s",
        ">= 150,000/s per edge process",
        lambda r: _at_least(r, "edge.saturation.batch_events_per_s", 150_000),
    ),
    (
        "edge, 50-event POSTs, CPU-seconds per 1,000 events",
        "edge.batch_cpu_s_per_1k",
        "cpu",
        "edge.batch_baseline_cpu_s_per_1k",
        "",
        None,
    ),
    (
        "edge, 50-event POSTs p99, open loop at 50% of our best rate",
        "edge.saturation.batch_p99_ms_at_half",
        "ms",
        "edge.saturation.batch_baseline_p99_ms_at_half",
        "",
        None,
    ),
    ("edge peak RSS", "edge.peak_rss_mb", "MB", "edge.baseline_peak_rss_mb", "", None),
    (
        "pure cores, events per core-second",
        "cores.events_per_s",
        "/s",
        "cores.baseline_events_per_s",
        "(baseline: orjson decode only)",
        None,
    ),
    (
        "Faust worker (trackpipe worker), Kafka to ClickHouse",
        "worker.events_per_s",
        "/s",
        "worker.baseline_events_per_s",
        ">= 20,000/s per worker",
        lambda r: _at_least(r, "worker.events_per_s", 20_000),
    ),
    (
        "Faust worker peak RSS, default store, outbound planning drained (1M events in the full profile)",
        "worker.peak_rss_mb",
        "MB",
        "worker.idle_rss_mb",
        "<= 300 MB after 1M events",
        lambda r: _at_most(r, "worker.peak_rss_mb", 300) if (_get(r, "worker.events") or 0) >= 1e6 else None,
    ),
    ("Faust worker RSS growth per 100k events", "worker.rss_mb_per_100k_events", "MB", None, "", None),
    ("Faust worker RSS per active visitor", "worker.bytes_per_active_visitor", "B", None, "", None),
    (
        "embedded edge p99 while its runner processes a backlog (vs idle)",
        "e2e.embedded.p99_ms_backlog",
        "ms",
        "e2e.embedded.p99_ms_idle",
        "unchanged (within 25% of idle)",
        lambda r: _ratio_at_most(r, "e2e.embedded.p99_ms_backlog", "e2e.embedded.p99_ms_idle", 1.25),
    ),
    (
        "sink rows into ClickHouse server",
        "sink.rows_per_s",
        "/s",
        "sink.baseline_rows_per_s",
        ">= 80% of raw Arrow insert",
        lambda r: _ratio_at_least(r, "sink.rows_per_s", "sink.baseline_rows_per_s", 0.8),
    ),
    ("sink rows into embedded chdb", "sink.chdb_rows_per_s", "/s", "sink.chdb_arrow_rows_per_s", "", None),
    (
        "end to end p50, embedded",
        "e2e.p50_s",
        "s",
        None,
        "",
        None,
    ),
    (
        "end to end p95, embedded",
        "e2e.p95_s",
        "s",
        None,
        "<= 2 s",
        lambda r: _at_most(r, "e2e.p95_s", 2.0),
    ),
    ("end to end p99, embedded", "e2e.p99_s", "s", None, "", None),
    (
        "end to end p95, distributed",
        "e2e.distributed.p95_s",
        "s",
        None,
        "<= 2 s",
        lambda r: _at_most(r, "e2e.distributed.p95_s", 2.0),
    ),
    (
        "outbound: conversion to first delivery p50, one receiver host",
        "outbound.p50_s",
        "s",
        None,
        "",
        None,
    ),
    (
        "outbound: conversion to first delivery p95, one receiver host",
        "outbound.p95_s",
        "s",
        None,
        "<= 1 s at 500 conversions/s",
        lambda r: (
            _at_most(r, "outbound.p95_s", 1.0) if (_get(r, "outbound.rate_per_s") or 0) >= 500 else None
        ),
    ),
    (
        "outbound: deliveries per second, one receiver host (vs offered)",
        "outbound.deliveries_per_s",
        "/s",
        "outbound.sent_rate_per_s",
        "",
        None,
    ),
    (
        "outbound: first delivery p95, load over N receiver hosts",
        "outbound.spread.p95_s",
        "s",
        None,
        "<= 1 s at 500 conversions/s",
        lambda r: (
            _at_most(r, "outbound.spread.p95_s", 1.0)
            if (_get(r, "outbound.spread.rate_per_s") or 0) >= 500
            else None
        ),
    ),
    (
        "outbound: deliveries per second, N receiver hosts (vs offered)",
        "outbound.spread.deliveries_per_s",
        "/s",
        "outbound.spread.sent_rate_per_s",
        "",
        None,
    ),
    (
        "outbound: receiver down, then up: conversions lost",
        "outbound.down.lost",
        "",
        "outbound.down.conversions",
        "0 lost",
        lambda r: None if _get(r, "outbound.down.lost") is None else _get(r, "outbound.down.lost") == 0,
    ),
    (
        "alerts: threshold crossed (edge 2xx) to firing webhook p50",
        "alerts.p50_s",
        "s",
        None,
        "",
        None,
    ),
    (
        "alerts: threshold crossed (edge 2xx) to firing webhook p95",
        "alerts.p95_s",
        "s",
        None,
        "<= 5 s, no episode missed",
        lambda r: (
            None
            if _get(r, "alerts.p95_s") is None
            else _get(r, "alerts.p95_s") <= 5.0 and _get(r, "alerts.missed") == 0
        ),
    ),
    (
        "alerts: rules x projects one process evaluates keeping that p95",
        "alerts.capacity.rules_x_projects",
        "",
        None,
        "largest measured with p95 <= 5 s",
        None,
    ),
    (
        "alerts through Kafka + one trackpipe worker: firing webhook p95",
        "alerts.distributed.p95_s",
        "s",
        None,
        "<= 5 s, no episode missed",
        lambda r: (
            None
            if _get(r, "alerts.distributed.p95_s") is None
            else _get(r, "alerts.distributed.p95_s") <= 5.0 and _get(r, "alerts.distributed.missed") == 0
        ),
    ),
    (
        "alerts: rules x projects one trackpipe worker evaluates keeping that p95",
        "alerts.distributed.capacity.rules_x_projects",
        "",
        None,
        "largest measured with p95 <= 5 s",
        None,
    ),
    (
        "rescale 4 -> 8 partitions under load: processing pause",
        "rescale.pause_s",
        "s",
        None,
        "recorded (docs/rescaling.md)",
        None,
    ),
    (
        "rescale: requests answered otherwise than 2xx during it",
        "rescale.not_2xx",
        "",
        None,
        "0",
        lambda r: None if _get(r, "rescale.not_2xx") is None else _get(r, "rescale.not_2xx") == 0,
    ),
    (
        "rescale: edge p99 latency during it (before: see JSON)",
        "rescale.during.p99_s",
        "s",
        None,
        "",
        None,
    ),
    (
        "Top-5 report from the writers' counters (median; `trackpipe run` keeps them, decision 150);"
        " baseline: the exact reading, which a distributed deployment answers (its workers keep none)",
        "report.top5_ms",
        "ms",
        "report.top5_exact_ms",
        "<= 50 ms over 10M events",
        lambda r: _at_most(r, "report.top5_ms", 50.0) if (_get(r, "report.events") or 0) >= 10**7 else None,
    ),
]


def _at_least(r: dict[str, Any], path: str, target: float) -> bool | None:
    v = _get(r, path)
    return None if v is None else v >= target


def _at_most(r: dict[str, Any], path: str, target: float) -> bool | None:
    v = _get(r, path)
    return None if v is None else v <= target


def _ratio_at_most(r: dict[str, Any], a: str, b: str, target: float) -> bool | None:
    va, vb = _get(r, a), _get(r, b)
    if va is None or not vb:
        return None
    return bool(va / vb <= target)


def _ratio_at_least(r: dict[str, Any], a: str, b: str, target: float) -> bool | None:
    va, vb = _get(r, a), _get(r, b)
    if va is None or not vb:
        return None
    return bool(va / vb >= target)


def markdown(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    lines = [
        f"## trackpipe benchmarks ({results.get('profile')}, {results.get('date')})",
        "",
        f"{m.get('cores')} cores, Python {m.get('python')}, Kafka {m.get('kafka')}, "
        f"ClickHouse {m.get('clickhouse')}, chdb {m.get('chdb')}; load generator: "
        f"{_get(results, 'edge.generator') or '-'}",
        "",
        "| stage | trackpipe | raw baseline | ratio | target | met |",
        "|---|---:|---:|---:|---|:-:|",
    ]
    for label, ours, unit, base, target, check in ROWS:
        v = _get(results, ours)
        if v is None and check is None and base is None:
            continue
        b = _get(results, base) if base else None
        ratio = f"{v / b:.0%}" if isinstance(v, int | float) and isinstance(b, int | float) and b else ""
        met = check(results) if check else None
        mark = {True: "yes", False: "**no**", None: ""}[met]
        lines.append(
            f"| {label} | {_fmt(v, unit)} | {_fmt(b, unit) if base else ''} | {ratio} | {target} | {mark} |"
        )
    sweep = _get(results, "edge.saturation.sweep") or {}
    for kind, label in (("single", "1-event"), ("batch", "50-event")):
        bare = {p["concurrency"]: p for p in sweep.get(f"bare_{kind}", [])}
        for point in sweep.get(f"edge_{kind}", []):
            b = bare.get(point["concurrency"], {})
            ratio = f"{point['events_per_s'] / b['events_per_s']:.0%}" if b.get("events_per_s") else ""
            lines.append(
                f"| edge sweep, {label} POSTs, {point['concurrency']:,} connections: events/s"
                f" (CPU-s per 1k, p99 closed loop) | {_fmt(point['events_per_s'], '/s')}"
                f" ({_fmt(point.get('cpu_s_per_1k'), 'cpu')}, {_fmt(point.get('p99_ms'), 'ms')})"
                f" | {_fmt(b.get('events_per_s'), '/s')} ({_fmt(b.get('cpu_s_per_1k'), 'cpu')},"
                f" {_fmt(b.get('p99_ms'), 'ms')}) | {ratio} | | |"
            )
    exact = _get(results, "report.by_events_exact") or {}
    for size, ms in sorted((_get(results, "report.by_events") or {}).items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| Top-5 over {int(size):,} events, counters (median) vs the exact reading | {ms:,.1f} ms"
            f" | {_fmt(exact.get(size), 'ms')} | | | |"
        )
    heavy = _get(results, "report.conversion_heavy.top5_ms")
    if heavy is not None:
        events = int(_get(results, "report.conversion_heavy.events") or 0)
        before = _fmt(_get(results, "report.conversion_heavy.top5_exact_ms"), "ms")
        lines.append(
            f"| Top-5 over {events:,} events, 40% conversions, counters (median) vs the exact reading"
            f" | {heavy:,.1f} ms | {before} | | | |"
        )
    points = [("", p) for p in _get(results, "alerts.capacity.points") or []]
    points += [(", one worker", p) for p in _get(results, "alerts.distributed.capacity.points") or []]
    for where, point in points:
        p95 = point.get("p95_s")
        label = (
            f"alerts{where}: firing p95 with {point['rules_per_project']} rules x {point['projects']}"
            f" projects, {point['load_per_s']:,.0f} req/s background"
        )
        met = p95 is not None and p95 <= 5.0 and point.get("missed") == 0
        lines.append(f"| {label} | {_fmt(p95, 's')} | | | <= 5 s | {'yes' if met else '**no**'} |")
    errors = results.get("errors") or {}
    for stage, err in errors.items():
        lines.append(f"\n**{stage} failed**: {str(err).splitlines()[0][:300]}")
    return "\n".join(lines)
