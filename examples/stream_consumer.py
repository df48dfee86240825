"""Read trackpipe's public conversion stream from Kafka and print one line per conversion change.

    python examples/stream_consumer.py --bootstrap 127.0.0.1:9092 --topic trackpipe.events.stream \\
        [--project 12345] [--group my-consumer] [--from-beginning] [--max-messages N] [--idle-exit S]

Each message is a CloudEvents 1.0 structured JSON event keyed by project (one project's messages are in
order). Consumers should ignore fields and event types they do not know (additive changes within a
major version) and deduplicate by ``id`` (a message may repeat after a worker crash).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiokafka import AIOKafkaConsumer

CONVERSION_TYPES = {
    "com.trackpipe.conversion.created",
    "com.trackpipe.conversion.updated",
    "com.trackpipe.conversion.reversed",
}


def line(event: dict) -> str:
    data = event["data"]
    change = event["type"].rsplit(".", 1)[-1]
    return (
        f"{event['time']} {data['project']} {change:<8} {data['conversion_id']} goal={data['goal_id']} "
        f"order={data['order_id'] or '-'} value={data['value']} {data['currency'] or ''} "
        f"status={data['status'] or '-'} v{data['version']}"
    )


async def consume(args: argparse.Namespace) -> int:
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=args.group is not None,
    )
    await consumer.start()
    seen: set[str] = set()
    printed = 0
    try:
        while args.max_messages is None or printed < args.max_messages:
            batch = await consumer.getmany(timeout_ms=int(args.idle_exit * 1000) if args.idle_exit else 1000)
            if not batch and args.idle_exit:
                break
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    if event["type"] not in CONVERSION_TYPES or event["id"] in seen:
                        continue  # another kind of message, or a repeat
                    if args.project and event["data"]["project"] != args.project:
                        continue
                    seen.add(event["id"])
                    print(line(event), flush=True)
                    printed += 1
    finally:
        await consumer.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="trackpipe.events.stream")
    parser.add_argument("--project", default=None)
    parser.add_argument("--group", default=None, help="consumer group (commits offsets); none: no commits")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--max-messages", type=int, default=None)
    parser.add_argument("--idle-exit", type=float, default=0.0, help="exit after this many idle seconds")
    return asyncio.run(consume(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
