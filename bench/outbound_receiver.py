"""The outbound stage's webhook receiver, run in its own process (it must not share the measuring loop):
``python -m bench.outbound_receiver --port P --hosts N``.

Listens on 127.0.0.1 .. 127.0.0.N (one "host" per address, so the sender's per-host limits apply per
address), answers every request 204 and records (webhook-id, order id, arrival time on the system-wide
monotonic clock, which the bench reads too). An alert webhook (stage ``alerts``: a body with a
``transition_id``) is recorded with ``<rule id>:<state>`` in place of the order id. ``GET /stats`` on
127.0.0.1 answers the records since the ``since``-th as JSON ``[[id, order, t], ...]``; ``GET /healthz``
answers 200.
"""

from __future__ import annotations

import argparse
import time

import orjson
from aiohttp import web

RECORDS = web.AppKey("records", list)


async def _hook(request: web.Request) -> web.Response:
    t = time.monotonic()
    body = await request.read()
    try:
        obj = orjson.loads(body)
        if "transition_id" in obj:  # an alert rule's webhook (bench.alerts)
            order = f"{obj['rule']['id']}:{obj['state']}"
        else:
            order = str(obj.get("order_id"))
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        order = ""
    request.app[RECORDS].append((request.headers.get("webhook-id", ""), order, t))
    return web.Response(status=204)


async def _stats(request: web.Request) -> web.Response:
    since = int(request.query.get("since", "0"))
    return web.Response(body=orjson.dumps(request.app[RECORDS][since:]), content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(status=200)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hosts", type=int, default=1)
    args = p.parse_args()
    app = web.Application()
    app[RECORDS] = []
    app.router.add_get("/stats", _stats)
    app.router.add_get("/healthz", _healthz)
    app.router.add_route("*", "/{tail:.*}", _hook)
    hosts = [f"127.0.0.{i}" for i in range(1, args.hosts + 1)]
    web.run_app(app, host=hosts, port=args.port, print=None, access_log=None, handle_signals=True)


if __name__ == "__main__":
    main()
