"""The embedded sink path, in its own process (one chdb path per process): ``python -m bench.chdb_child``.

Writes the sink stage's batches through ``ClickHouseSink`` on ``ChdbBackend`` (the embedded runner's
path), then the same rows (all four tables) as ready-made Arrow tables through ``ChdbBackend.insert_arrow``
into a twin database with the same schema, materialized views included (the engine's own Arrow insert,
without our row-to-Arrow conversion; until 2026-12-05 the copies had no materialized views, which made
the baseline do less work than the sink). Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time

from bench.sink import processed_batches, raw_tables, warm_up
from sinks.chdb_backend import ChdbBackend
from sinks.clickhouse_sink import ClickHouseSink
from sinks.migrate import migrate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chdb_child")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    args = p.parse_args(argv)
    batches = processed_batches(args.events, args.batch, seed=41)
    rows = sum(len(b.events) + len(b.conversions) + len(b.sessions) + len(b.exposures) for b in batches)
    with tempfile.TemporaryDirectory(prefix="trackpipe-bench-chdb-") as tmp:
        backend = ChdbBackend(tmp, "bench")
        try:
            # the raw side gets a twin database with the same schema, materialized views included
            # (they are part of what an insert costs), as the server stage does
            raw = copy.copy(backend)  # the same session and lock, another target database
            raw.database = "bench_raw"
            for db, target in (("bench_raw", raw), ("bench", backend)):
                backend.command(f"CREATE DATABASE IF NOT EXISTS {db}")
                backend.command(f"USE {db}")
                migrate(target)
            sink = ClickHouseSink(backend)
            ours_s = raw_s = 0.0
            warm_up(batches)
            for i, batch in enumerate(batches):
                t0 = time.perf_counter()
                sink.write_batch(batch, f"bench:{i}")
                t1 = time.perf_counter()
                tables = raw_tables(batch)
                t2 = time.perf_counter()
                for name, table in tables:
                    raw.insert_arrow(name, table)
                ours_s += t1 - t0
                raw_s += time.perf_counter() - t2
        finally:
            backend.close()
    print(
        json.dumps(
            {
                "rows": rows,
                "rows_per_s": rows / ours_s,
                "arrow_rows_per_s": rows / raw_s,
                "ratio": raw_s / ours_s,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
