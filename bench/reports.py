"""Stage 5, reports: Top-5 latency (``sinks.reports.top_events`` on ``ServerBackend``) over 1M / 10M events.

The rows are made by ClickHouse itself (``INSERT ... SELECT FROM numbers()``) in a dedicated database
``bench_report_<mix>_<N>``: one project holding all N raw events of the last 29 days (the report's default
period), N/20 distinct visitors, 20 goals; the conversions table gets one row per goal hit or transaction,
as the processors write them (a goal hit once per visitor: repeats are versions of one conversion). The
materialized views fill the aggregates as the events are inserted, as the sink's inserts do.

Two mixes (docs/performance.md "Reports"): ``typical`` — 90% experiment views, 8% goal hits, 2%
transactions, one conversion event in ten (the headline ``report.top5_ms``) — and ``conversion_heavy`` —
60% / 30% / 10%, four in ten (``report.conversion_heavy.top5_ms``, on the largest size only): the part of
the report that reads conversions grows with their number, the visitors part with the visitors. A
database that already holds the right count is reused (handy against a long-lived server). After
generating, the stage waits until the server has no merge running (parts are left as the merge policy
leaves them: no OPTIMIZE), so queries are timed on a settled server.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.profiles import Profile
from bench.report_counters import ensure_counters
from bench.servers import Servers
from schemas.reports import TopEventsQuery
from sinks import report_counters, reports
from sinks.migrate import migrate
from sinks.server_backend import ServerBackend

PROJECT = "bench-report"

EVENTS_SQL = """
INSERT INTO events_raw (event_id, type, received_at, occurred_at, account_id, project_id, visitor_id,
    experiment_ids, variation_ids, goal_ids, revenue, currency, products_count, transaction_id,
    seg_browser, seg_devices, seg_source, seg_campaign, seg_returning, seg_country, seg_custom,
    client_ip, user_agent, source_format, schema_version)
SELECT
    concat('e-', toString(number)),
    multiIf(number % 100 < {views:UInt8}, 'view_exp', number % 100 < {views_goals:UInt8}, 'hit_goal',
            'transaction'),
    ts, ts, '77', {project:String},
    concat('v-', toString(intHash64(number) % {visitors:UInt64})),
    [toString(100000 + number % 10)], [toString(1000000 + number % 30)],
    if(number % 100 < {views:UInt8}, [], [toString(1 + intHash32(number) % 20)]),
    if(number % 100 >= {views_goals:UInt8}, toDecimal64((intHash32(number) % 30000) / 100, 4), NULL),
    '', NULL, if(number % 100 >= {views_goals:UInt8}, concat('order-', toString(number)), ''),
    'CH', ['DESK'], 'direct', '', 0, 'US', [], '10.0.0.1', 'trackpipe-bench', 'convert_json', 1
FROM (
    SELECT number, now64(3, 'UTC') - toIntervalMillisecond(intHash64(number) % (29 * 86400000)) AS ts
    FROM numbers({n:UInt64})
)
"""

CONVERSIONS_SQL = """
INSERT INTO conversions (project_id, goal_id, conversion_key, account_id, visitor_id, event_id, event_type,
    occurred_at, received_at, revenue, currency, products_count, transaction_id, experiment_ids,
    variation_ids, version)
SELECT project_id, goal_ids[1],
    if(type = 'transaction', concat('tx:', transaction_id), concat('visitor:', visitor_id)),
    account_id, visitor_id, event_id, type, occurred_at, received_at,
    ifNull(revenue, toDecimal64(0, 4)), '', 0, transaction_id, experiment_ids, variation_ids,
    toUInt64(toUnixTimestamp64Milli(received_at))
FROM events_raw
WHERE type != 'view_exp'
"""


#: mix -> (% experiment views, % goal hits); the rest are transactions
MIXES = {"typical": (90, 8), "conversion_heavy": (60, 30)}


def _ensure_data(host: str, port: int, n: int, mix: str = "typical") -> tuple[ServerBackend, float]:
    backend = ServerBackend(host, port, f"bench_report_{mix}_{n}", send_receive_timeout=600)
    migrate(backend)
    have = backend.query("SELECT count() FROM events_raw")[0][0]
    if have == n:
        return backend, 0.0
    t0 = time.perf_counter()
    # the aggregates too: the views add the new events to whatever the old ones left there
    for table in (
        "events_raw",
        "conversions",
        "report_reach_daily",
        "report_visitor_days",
        "report_counters_ready",
    ):
        backend.command(f"TRUNCATE TABLE {table}")
    views, goals = MIXES[mix]
    backend.command(
        EVENTS_SQL,
        {
            "project": PROJECT,
            "visitors": max(1, n // 20),
            "n": n,
            "views": views,
            "views_goals": views + goals,
        },
    )
    backend.command(CONVERSIONS_SQL)
    _wait_for_merges(backend)
    return backend, time.perf_counter() - t0


def _wait_for_merges(backend: ServerBackend, timeout_s: float = 900.0) -> None:
    """Let the server finish the merges the bulk load started (no OPTIMIZE: the parts stay as the merge
    policy leaves them), so the queries are timed on a settled server, not next to a merge storm."""
    sql = "SELECT count() FROM system.merges WHERE database = currentDatabase()"
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        quiet = quiet + 1 if backend.query(sql)[0][0] == 0 else 0
        time.sleep(1.0)


def _interleaved_ms(a: Any, b: Any, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(median, p95) of ``a`` and of ``b``, run alternately (A, B, A, B, ...) after two warm-ups each."""
    for _ in range(2):
        a()
        b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((a, times[0]), (b, times[1])):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000)
    return _stats(times[0]), _stats(times[1])


def _stats(times: list[float]) -> tuple[float, float]:
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def _median_ms(fn: Any, repeats: int) -> tuple[float, float]:
    for _ in range(2):
        fn()  # warm-up: connection, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return _stats(times)


def _measure(servers: Servers, profile: Profile, n: int, mix: str) -> dict[str, Any]:
    backend, generate_s = _ensure_data(servers.clickhouse_host, servers.clickhouse_port, n, mix)
    try:
        counters_s = ensure_counters(backend, PROJECT)
        _wait_for_merges(backend)
        query = TopEventsQuery(project=PROJECT)
        answer = reports.top_events(backend, query, use_counters=False)
        if not answer.rows:
            raise RuntimeError(f"the Top-5 report over {n} events ({mix}) is empty")
        fast = reports.top_events(backend, query)
        if fast != answer:  # the counters must give the exact reading's numbers
            raise RuntimeError(f"the Top-5 from the counters differs ({n} events, {mix}): {fast} != {answer}")
        start, end = query.period()
        params: dict[str, Any] = {
            "project": PROJECT,
            "start": reports.ts(start),
            "end": reports.ts(end),
            "limit": 5,
        }
        reach = {**params, **reports.reach_params("visitors", query, start, end)}
        groups = [row.goal_id for row in answer.rows]
        # the exact reading (baseline) and the counters, interleaved: the same load for both
        exact_ms, counters_ms = _interleaved_ms(
            lambda: reports.top_events(backend, query, use_counters=False),
            lambda: reports.top_events(backend, query),
            profile.report_repeats,
        )
        median, p95 = exact_ms
        parts = {
            "visitors_query_ms": (reports.REACH_SQL["visitors"], reach),
            "visitors_raw_query_ms": (reports.VISITORS_SQL, params),
            "top_goals_query_ms": (reports.TOP_GOALS_SQL, params),
            "converters_query_ms": (reports.CONVERTERS_BY_BASE["visitors"], {**params, "groups": groups}),
        }
        details: dict[str, Any] = {
            "median_ms": median,
            "p95_ms": p95,
            "counters_median_ms": counters_ms[0],
            "counters_p95_ms": counters_ms[1],
        }
        fast_params = {**params, "full_start": start.date().isoformat(), "full_end": end.date().isoformat()}
        counter_parts = {  # the top goals come with their converters (one query)
            "counters_visitors_query_ms": (report_counters.VISITORS_SQL, fast_params),
            "counters_top_goals_query_ms": (report_counters.TOP_GOALS_SQL, fast_params),
        }
        parts.update(counter_parts)
        for name, (sql, values) in parts.items():
            details[name] = _median_ms(lambda s=sql, v=values: backend.query(s, v), profile.report_repeats)[0]
        details.update(
            conversion_rows=backend.query("SELECT count() FROM conversions")[0][0],
            counter_rows={
                t: backend.query(f"SELECT count() FROM {t}")[0][0]
                for t in ("report_goal_days", "report_goal_pairs", "report_visit_pairs")
            },
            counters_s=counters_s,
            visitors=answer.visitors,
            generate_s=generate_s,
        )
        return details
    finally:
        backend.close()


def bench_report(servers: Servers, profile: Profile) -> dict[str, Any]:
    """``top5_ms`` / ``top5_p95_ms`` (and ``by_events``): the report from the writers' counters (decision
    100), as it answers for a project whose counters are complete; ``top5_exact_ms`` /
    ``top5_exact_p95_ms`` (``by_events_exact``): the exact reading, measured interleaved with it in the
    same run (the baseline). The counters here are made by the writers' own code from the generated rows;
    the stages do not write them yet (decision 102), so until they do, production answers with the exact
    reading."""
    by_events: dict[str, float] = {}
    by_events_exact: dict[str, float] = {}
    details: dict[str, Any] = {}
    for n in profile.report_sizes:
        details[str(n)] = _measure(servers, profile, n, "typical")
        by_events[str(n)] = details[str(n)]["counters_median_ms"]
        by_events_exact[str(n)] = details[str(n)]["median_ms"]
    largest = max(profile.report_sizes)
    heavy = _measure(servers, profile, largest, "conversion_heavy")
    top = details[str(largest)]
    return {
        "top5_ms": top["counters_median_ms"],
        "top5_p95_ms": top["counters_p95_ms"],
        "top5_exact_ms": top["median_ms"],
        "top5_exact_p95_ms": top["p95_ms"],
        "events": largest,
        "mix": "typical",
        "by_events": by_events,
        "by_events_exact": by_events_exact,
        "details": details,
        "conversion_heavy": {
            "events": largest,
            "top5_ms": heavy["counters_median_ms"],
            "top5_p95_ms": heavy["counters_p95_ms"],
            "top5_exact_ms": heavy["median_ms"],
            "top5_exact_p95_ms": heavy["p95_ms"],
            "details": heavy,
        },
    }
