"""Stage 2a, the pure processing cores: ConversionPipeline over recorded envelope records, one thread.

Measured in CPU seconds of the running thread, so a busy machine slows the wall clock but not the number:
``events_per_s`` is events per second of one core. The raw baseline is decoding the same records with
orjson (the least any reader must do), so the ratio shows what validation and processing add.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import orjson

from bench import stream
from bench.profiles import Profile
from processors.pipeline import ConversionPipeline


def bench_cores(profile: Profile) -> dict[str, Any]:
    events = stream.recorded_events(profile.cores_events, seed=21)
    records = [payload for _, payload in stream.envelope_records(events, events_per_record=100)]
    batches = list(stream.chunks(records, 20))  # ~2,000 events per batch, like a worker batch

    # warm-up (imports, caches), then the measured pass with fresh state
    ConversionPipeline().process_records(batches[0])
    pipeline = ConversionPipeline()
    t_cpu, t_wall = time.thread_time(), time.perf_counter()
    out_events = conversions = dropped = 0
    for batch in batches:
        result = pipeline.process_records(batch)
        out_events += len(result.batch.events)
        conversions += len(result.batch.conversions)
        dropped += sum(result.dropped.values())
    # the cores pause the cyclic collector during a batch, and the young collection it then owes runs at
    # the next allocation (inside this loop for every batch but the last): the last one is charged here,
    # not to the baseline below
    gc.collect(0)
    cpu, wall = time.thread_time() - t_cpu, time.perf_counter() - t_wall

    gc.collect()  # not charged to the baseline either (the full collections the live state would get)
    t_base = time.thread_time()
    decoded = 0
    for batch in batches:
        for raw in batch:
            decoded += len(orjson.loads(raw)["events"])
    base_cpu = time.thread_time() - t_base

    if out_events != len(events):
        raise RuntimeError(f"pipeline returned {out_events} events for {len(events)} in")
    return {
        "events": len(events),
        "records": len(records),
        "events_per_s": len(events) / cpu,
        "wall_events_per_s": len(events) / wall,
        "conversions": conversions,
        "dropped": dropped,
        "baseline_events_per_s": decoded / base_cpu,
        "ratio": (len(events) / cpu) / (decoded / base_cpu),
        "us_per_event": cpu / len(events) * 1e6,
    }
