"""Arrow tables of the counter rows (schemas.rows GoalDayCounter, GoalPairCounter, VisitPairCounter):
few rows per batch (one per changed counter), built column by column from the dataclass fields."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import pyarrow as pa

from schemas.rows import GoalDayCounter, GoalPairCounter, VisitPairCounter

_TYPES: dict[str, pa.DataType] = {
    "day": pa.date32(),
    "prev_day": pa.date32(),
    "revenue": pa.decimal128(38, 4),
    "conversions": pa.int64(),
    "with_revenue": pa.int64(),
    "converters": pa.int64(),
    "visitors": pa.int64(),
    "version": pa.uint64(),
}

#: row kind -> its ClickHouse table (schemas/clickhouse/0026_report_counters.sql)
COUNTER_TABLES: dict[str, tuple[str, type]] = {
    "goal_days": ("report_goal_days", GoalDayCounter),
    "goal_pairs": ("report_goal_pairs", GoalPairCounter),
    "visit_pairs": ("report_visit_pairs", VisitPairCounter),
}


def counters_table(kind: str, rows: Sequence[Any]) -> pa.Table:
    names = [f.name for f in fields(COUNTER_TABLES[kind][1])]
    return pa.table(
        {n: pa.array([getattr(r, n) for r in rows], type=_TYPES.get(n, pa.string())) for n in names}
    )
