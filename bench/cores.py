"""Stage 2a, the pure processing cores: ConversionPipeline over recorded envelope records, one thread.

Measured in CPU seconds of the running thread, so a busy machine slows the wall clock but not the number:
``events_per_s`` is events per second of one core. Each batch is committed (its touched states encoded
into the store) as both runtimes do, and the input events are not held during the measure. The raw
baseline is decoding the same records with orjson (the least any reader must do), so the ratio shows
what validation and processing add.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench import stream
from bench.profiles import Profile
from processors.counting import CountingConfig
from processors.pipeline import ConversionPipeline


def _measure(
    batches: list[list[bytes]], make: Callable[[], ConversionPipeline]
) -> tuple[float, float, int, int, int]:
    """(CPU s, wall s, events out, conversions, dropped) of one pass over ``batches`` with fresh state."""
    gc.collect()
    pipeline = make()
    t_cpu, t_wall = time.thread_time(), time.perf_counter()
    out_events = conversions = dropped = 0
    for batch in batches:
        result = pipeline.process_records(batch)
        pipeline.commit()  # as both runtimes do once the batch is stored: each touched state encoded once
        out_events += len(result.batch.events)
        conversions += len(result.batch.conversions)
        dropped += sum(result.dropped.values())
    # the cores pause the cyclic collector during a batch, and the young collection it then owes runs at
    # the next allocation (inside this loop for every batch but the last): the last one is charged here,
    # not to the baseline
    gc.collect(0)
    return time.thread_time() - t_cpu, time.perf_counter() - t_wall, out_events, conversions, dropped


def bench_cores(profile: Profile) -> dict[str, Any]:
    events = stream.recorded_events(profile.cores_events, seed=21)
    records = [payload for _, payload in stream.envelope_records(events, events_per_record=100)]
    n_events = len(events)
    # the input models are not kept: a worker never holds them, and the collector's passes during the
    # measure would traverse them (~6 objects per event) and charge that to the pipeline
    del events
    batches = list(stream.chunks(records, 20))  # ~2,000 events per batch, like a worker batch

    # warm-up (imports, caches), then the measured passes with fresh state: the pipeline as the Faust
    # worker runs it, then with the embedded runner's counting step (the Top-5 counters, decision 150)
    ConversionPipeline(counting=CountingConfig()).process_records(batches[0])
    cpu, wall, out_events, conversions, dropped = _measure(batches, lambda: ConversionPipeline())
    counting_cpu, _, counted_events, _, _ = _measure(
        batches, lambda: ConversionPipeline(counting=CountingConfig())
    )
    if counted_events != n_events:
        raise RuntimeError(f"pipeline with counting returned {counted_events} events for {n_events} in")

    gc.collect()  # not charged to the baseline either (the full collections the live state would get)
    t_base = time.thread_time()
    decoded = 0
    for batch in batches:
        for raw in batch:
            decoded += len(orjson.loads(raw)["events"])
    base_cpu = time.thread_time() - t_base

    if out_events != n_events:
        raise RuntimeError(f"pipeline returned {out_events} events for {n_events} in")
    return {
        "events": n_events,
        "records": len(records),
        "events_per_s": n_events / cpu,
        "wall_events_per_s": n_events / wall,
        "conversions": conversions,
        "dropped": dropped,
        "baseline_events_per_s": decoded / base_cpu,
        "ratio": (n_events / cpu) / (decoded / base_cpu),
        "us_per_event": cpu / n_events * 1e6,
        "counting_events_per_s": n_events / counting_cpu,
        "counting_cost": counting_cpu / cpu - 1,  # CPU the counting step adds, as a fraction
        "state_committed_per_batch": True,  # since issue 16 item 1 (perf-cores2): encode cost included
    }
