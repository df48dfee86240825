"""The worker stage's raw baseline, in its own process: a plain aiokafka consumer reading the topic.

``python -m bench.raw_consumer --bootstrap B --topic T --group G --expect RECORDS --out result.json``

The clock starts with the fetch that brings the first records and stops when ``--expect`` records were
read; it fetches records and does nothing else with them. Writes one JSON object to ``--out`` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def consume(bootstrap: str, topic: str, group: str, expect: int) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        count = 0
        t0: float | None = None
        cpu0 = 0.0
        deadline = time.monotonic() + 120
        while count < expect:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read {count} of {expect} records in 120 s")
            t_call, cpu_call = time.perf_counter(), _cpu()
            batch = await consumer.getmany(timeout_ms=1000)
            for msgs in batch.values():
                if t0 is None:  # the clock includes the fetch that brought the first records
                    t0, cpu0 = t_call, cpu_call
                count += len(msgs)
        assert t0 is not None
        seconds = time.perf_counter() - t0
        return {
            "records": count,
            "seconds": seconds,
            "records_per_s": count / seconds if seconds > 0 else 0.0,
            "cpu_share": (_cpu() - cpu0) / seconds if seconds > 0 else 0.0,
        }
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.raw_consumer")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--expect", type=int, required=True, help="records to read")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    result = asyncio.run(consume(args.bootstrap, args.topic, args.group, args.expect))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
