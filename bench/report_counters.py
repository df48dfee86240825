"""The writers' counters for the report bench's generated databases, made by the writers' own code.

The bench generates its rows in ClickHouse (bench/reports.py), not through the stages, so the counters
the stages would emit are made here by :class:`processors.counters.CounterWriter` fed with what a writer
sees: every event's (visitor, day) and every stored conversion version in version order. WRITERS
writers (stage partitions) split the visitors by hash (the visitor stage is keyed by visitor; a
visitor's conversions stay in one writer, as the converter pairs need), each feeding its input in
BATCHES batches and inserting the rows of each batch (changed counters, versioned by the batch's last
input position) through the sink, so the counter tables hold many versions in many parts, as a stream
leaves them. The project is then marked ready.
"""

from __future__ import annotations

import time
from decimal import Decimal

from processors.counters import Contribution, CounterWriter
from schemas.rows import ProcessedBatch
from sinks import report_counters
from sinks.clickhouse_sink import ClickHouseSink
from sinks.server_backend import ServerBackend

WRITERS = 4
BATCHES = 40

_VISITS = """
SELECT DISTINCT visitor_id, toDate(occurred_at)
FROM events_raw
WHERE project_id = {project:String} AND cityHash64(visitor_id) % {writers:UInt32} = {writer:UInt32}
"""
_CONVERSIONS = """
SELECT goal_id, conversion_key, visitor_id, toDate(occurred_at), toString(revenue), currency, is_deleted,
       version
FROM conversions
WHERE project_id = {project:String} AND cityHash64(visitor_id) % {writers:UInt32} = {writer:UInt32}
ORDER BY version, goal_id, conversion_key
"""
_COUNTER_TABLES = ("report_goal_days", "report_goal_pairs", "report_visit_pairs")


def ensure_counters(backend: ServerBackend, project: str) -> float:
    """Make the counters unless the database has them already; returns the seconds it took (0: reused)."""
    if report_counters.is_ready(backend, project):
        return 0.0
    t0 = time.perf_counter()
    for table in _COUNTER_TABLES:
        backend.command(f"TRUNCATE TABLE {table}")
    sink = ClickHouseSink(backend)
    for w in range(WRITERS):
        params = {"project": project, "writers": WRITERS, "writer": w}
        writer = CounterWriter(str(w))
        items: list[tuple[bool, tuple]] = [(False, r) for r in backend.query(_VISITS, params)]
        items += [(True, r) for r in backend.query(_CONVERSIONS, params)]
        step = max(1, len(items) // BATCHES)
        for lo in range(0, len(items), step):
            for is_conversion, r in items[lo : lo + step]:
                if is_conversion:
                    goal, key, visitor, day, revenue, currency, deleted, version = r
                    c = Contribution(project, goal, day, currency, Decimal(revenue), visitor, not deleted)
                    writer.contribution(key, version, c)
                else:
                    writer.visit(project, r[0], r[1])
            end = min(lo + step, len(items)) - 1
            rows = {kind: tuple(v) for kind, v in writer.rows(end).items()}
            sink.write_batch(ProcessedBatch(**rows), f"bench-counters/{w}/{end}")
        del items, writer
    report_counters.mark_ready(backend, project)
    return time.perf_counter() - t0
