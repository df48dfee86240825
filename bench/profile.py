"""Profiles of the hot paths with pyinstrument (a dev dependency): ``python -m bench.profile STAGE``.

* ``edge --kafka host:port [--batch]``: the edge app (``build_edge_app`` + ``KafkaPublisher``) in this
  process under the profiler, driven by the stage's load generator from another process.
* ``cores``: ``ConversionPipeline.process_records`` over the recorded stream.
* ``arrow``: ``sinks.arrow_rows`` (rows to Arrow tables), the sink's Python half.

Prints pyinstrument's text tree (``--html FILE`` writes the HTML view as well).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from pyinstrument import Profiler

from bench import stream


def _edge(args: argparse.Namespace, profiler: Profiler) -> str:
    from aiohttp import web

    from bench.edge import BATCH_EVENTS, choose_generator, load
    from bench.kafka_topics import create_topics
    from bench.procs import free_port
    from bench.profiles import QUICK
    from ingest.app import build_edge_app
    from ingest.config.edge import EdgeConfig
    from ingest.produce.kafka_publisher import KafkaPublisher

    topic = f"bench-profile-{uuid.uuid4().hex[:8]}"
    create_topics(args.kafka, topic, 4)
    epr = BATCH_EVENTS if args.batch else 1
    work = Path(tempfile.mkdtemp(prefix="trackpipe-profile-"))
    bodies = work / "bodies.jsonl"
    bodies.write_bytes(b"\n".join(stream.bodies(500 if args.batch else 2000, epr, seed=61)) + b"\n")
    port = free_port()
    app = build_edge_app(EdgeConfig(), lambda: KafkaPublisher(args.kafka, topic, partitions=4))
    conc = args.concurrency or (max(QUICK.edge_batch_sweep) if args.batch else max(QUICK.edge_sweep))

    async def serve() -> dict[str, Any]:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        loop = asyncio.get_running_loop()
        try:
            profiler.start()  # this thread runs the event loop: the one to profile
            result = await loop.run_in_executor(
                None, lambda: load(choose_generator("auto", QUICK), port, bodies, epr, conc, QUICK)
            )
            profiler.stop()
        finally:
            await runner.cleanup()
        return result

    result = asyncio.run(serve())
    return json.dumps({k: result.get(k) for k in ("events_per_s", "p50_ms", "p99_ms", "server_cpu_share")})


def _cores(args: argparse.Namespace, profiler: Profiler) -> str:
    from processors.pipeline import ConversionPipeline

    events = stream.recorded_events(args.events, seed=21)
    records = [payload for _, payload in stream.envelope_records(events)]
    pipeline = ConversionPipeline()
    profiler.start()
    for batch in stream.chunks(records, 20):
        pipeline.process_records(batch)
    profiler.stop()
    return f"{len(events)} events"


def _arrow(args: argparse.Namespace, profiler: Profiler) -> str:
    from bench.sink import processed_batches
    from sinks.arrow_rows import conversions_table, events_table

    batches = processed_batches(args.events, 10_000, seed=41)
    events_table(batches[0].events[:10])  # warm-up: pyarrow's lazy imports (pandas) on first use
    conversions_table(batches[0].conversions[:10])
    profiler.start()
    for b in batches:
        events_table(b.events)
        conversions_table(b.conversions)
    profiler.stop()
    return f"{sum(len(b.events) for b in batches)} events"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("stage", choices=("edge", "cores", "arrow"))
    p.add_argument("--kafka", help="broker host:port (edge)")
    p.add_argument("--batch", action="store_true", help="edge: 50-event POSTs")
    p.add_argument("--concurrency", type=int, default=0, help="edge: connections (default: the sweep's top)")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--html", type=Path)
    args = p.parse_args(argv)
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    if args.stage == "edge":
        if not args.kafka:
            p.error("edge needs --kafka")
        summary = _edge(args, profiler)
    elif args.stage == "cores":
        summary = _cores(args, profiler)
    else:
        summary = _arrow(args, profiler)
    print(summary)
    print(profiler.output_text(unicode=False, color=False))
    if args.html:
        args.html.write_text(profiler.output_html())
    return 0


if __name__ == "__main__":
    sys.exit(main())
